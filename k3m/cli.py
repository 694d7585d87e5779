"""The `k3m` console script: one entry point, one subcommand per stage.

Each stage module exposes ``add_parser(subparsers)`` which registers its subcommand and
sets ``func`` (called with the parsed args, returns an exit code). Only the module of the
command being run is imported: stages pull in torch or database drivers, and
`k3m import` or `k3m --help` should not pay for that.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# command -> (module, one-line help), in the order the data walks: catalog -> graph
STAGES: dict[str, tuple[str, str]] = {
    "import": ("etl.cli", "import catalog files into a catalog build"),
    "kg": ("kg.cli", "load a build into RDF / the graph database, query them, serve, stats"),
    "pretrain": ("k3m.pretrain", "pretrain K3M on a catalog build"),
    "embed": ("k3m.embed", "write item embeddings to the build and the graph"),
    "query": ("k3m.query", "Cypher-driven query scripts over item embeddings"),
    "evaluate": ("k3m.evaluate", "downstream tasks under missing/noisy modalities, against baselines"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The full parser for ``command``; other commands get a placeholder with their help."""
    parser = argparse.ArgumentParser(
        prog="k3m",
        description="K3M product knowledge graph: import catalogs, build the KG, pretrain, embed, query, evaluate.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module_name, help_text) in STAGES.items():
        if name == command:
            importlib.import_module(module_name).add_parser(sub)
        else:
            sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in STAGES else None)
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
