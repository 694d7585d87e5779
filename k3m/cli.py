"""The `k3m` console script: one entry point, one subcommand per stage.

Each stage module exposes ``add_parser(subparsers)`` which registers its subcommand and
sets ``func`` (called with the parsed args, returns an exit code). Only the module of the
command being run is imported: stages pull in torch or database drivers, and
`k3m import` or `k3m --help` should not pay for that.

Errors are reported here, once, for every command: a stage raises, and the user sees one
line ``k3m COMMAND: error: MESSAGE`` without a traceback. Exit 2 is a user error (bad
arguments, config, input files or state the user can fix: ValueError, LookupError, missing
files, or an exception whose class sets ``exit_code = 2``); exit 1 is a runtime failure
(RuntimeError, OSError, a graph database error). Anything else is a bug and keeps its
traceback; ``K3M_DEBUG=1`` shows the traceback of every error.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

# command -> (module, one-line help), in the order the data walks: catalog -> graph
STAGES: dict[str, tuple[str, str]] = {
    "import": ("etl.cli", "import catalog files into a catalog build"),
    "kg": ("kg.cli", "load a build into RDF / the graph database, query them, serve, stats"),
    "pretrain": ("k3m.training.cli", "pretrain K3M on a catalog build"),
    "embed": ("k3m.embedding.cli", "write item embeddings to the build and the graph"),
    "sync": ("k3m.sync", "update a build, its RDF store, graph and embeddings to a catalog's new version"),
    "query": ("k3m.query", "Cypher-driven query scripts over item embeddings"),
    "serve-api": ("k3m.serve.cli", "HTTP query service: similar items, completion, embeddings (index warm)"),
    "evaluate": ("k3m.evaluation.cli", "downstream tasks under missing/noisy modalities, against baselines"),
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


USER_ERROR, RUNTIME_FAILURE = 2, 1
_USER_ERRORS = (ValueError, LookupError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError,
                PermissionError)


def exit_code_of(exc: BaseException) -> int | None:
    """2 for a user error, 1 for a runtime failure, None for a bug (keeps its traceback)."""
    code = getattr(exc, "exit_code", None)
    if isinstance(code, int):
        return code
    if isinstance(exc, _USER_ERRORS):
        return USER_ERROR
    if isinstance(exc, (RuntimeError, OSError)) or type(exc).__module__.startswith("neo4j"):
        return RUNTIME_FAILURE
    return None


def message_of(exc: BaseException) -> str:
    if isinstance(exc, KeyError) and exc.args:  # str(KeyError) is the repr of its argument
        return str(exc.args[0])
    return str(exc) or type(exc).__name__


def run_command(prog: str, func, args) -> int:
    """``func(args)``, with every known error turned into one line and an exit code."""
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - sorted into user errors, failures and bugs below
        code = exit_code_of(exc)
        if code is None or os.environ.get("K3M_DEBUG"):
            raise
        print(f"{prog}: error: {message_of(exc)}", file=sys.stderr)
        return code


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in STAGES else None)
    args = parser.parse_args(argv)
    return run_command(f"k3m {args.command}", args.func, args)


if __name__ == "__main__":
    sys.exit(main())
