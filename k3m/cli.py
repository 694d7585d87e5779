"""The `k3m` console script: one entry point, one subcommand per stage.

Each stage module exposes ``add_parser(subparsers)`` which registers its subcommand and
sets ``func`` (called with the parsed args, returns an exit code). Stage modules keep
heavy imports (torch, drivers) inside their functions so `k3m --help` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# (module, what it adds) in the order the data walks: catalog -> build -> model -> graph
STAGES = [
    "etl.cli",  # k3m import
    "kg.cli",  # k3m kg load|serve|stop|sparql|cypher|stats|export
    "k3m.pretrain",  # k3m pretrain
    "k3m.evaluate",  # k3m evaluate
    "k3m.embed",  # k3m embed
    "k3m.query",  # k3m query similar|complete|export|cypher
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="k3m",
        description="K3M product knowledge graph: import catalogs, build the KG, pretrain, embed, query, evaluate.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in STAGES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:  # a stage not built yet in this checkout
            if exc.name == name:
                continue
            raise
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
