"""The `k3m` console script: one entry point, one subcommand per stage.

Each stage module exposes ``add_parser(subparsers)`` which registers its subcommand and
sets ``func`` (called with the parsed args, returns an exit code). Only the module of the
command being run is imported: stages pull in torch or database drivers, and
`k3m import` or `k3m --help` should not pay for that.

Errors are reported here, once, for every command: a stage raises, and the user sees one
line ``k3m COMMAND: error: MESSAGE`` without a traceback. Exit 2 is a user error (bad
arguments, config, input files or state the user can fix: an :class:`etl.errors.UserError`,
a missing or unreadable file the user named, or an exception whose class sets
``exit_code = 2``); exit 1 is a runtime failure (RuntimeError, OSError, a graph database
error). Anything else (an IndexError, a ValueError deep in the code) is a bug: one line
saying so, exit 1, and ``K3M_DEBUG=1`` shows its traceback (and that of every error).
"""
from __future__ import annotations

import argparse
import importlib
import logging
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
# files and directories the user named: missing, in the way, or not theirs to read
_USER_OS_ERRORS = (FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError, PermissionError)
DEBUG_ENV = "K3M_DEBUG"


def exit_code_of(exc: BaseException) -> int | None:
    """2 for a user error, 1 for a runtime failure, None for a bug."""
    from etl.errors import UserError

    if isinstance(exc, UserError):
        return USER_ERROR
    code = getattr(exc, "exit_code", None)
    if isinstance(code, int):
        return code
    if isinstance(exc, _USER_OS_ERRORS):
        return USER_ERROR
    if isinstance(exc, (RuntimeError, OSError)) or type(exc).__module__.startswith("neo4j"):
        return RUNTIME_FAILURE
    return None


def message_of(exc: BaseException) -> str:
    if isinstance(exc, KeyError) and exc.args:  # str(KeyError) is the repr of its argument
        return str(exc.args[0])
    if type(exc).__module__.startswith("neo4j"):  # the driver's messages span lines
        return " ".join(str(exc).split()) or type(exc).__name__
    return str(exc) or type(exc).__name__


def run_command(prog: str, func, args) -> int:
    """``func(args)``, with every known error turned into one line and an exit code."""
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - sorted into user errors, failures and bugs below
        if os.environ.get(DEBUG_ENV):
            raise
        code = exit_code_of(exc)
        if code is None:  # a bug: say so in one line, never dressed up as the user's mistake
            print(f"{prog}: internal error: {type(exc).__name__}: {message_of(exc)} (this is a bug; "
                  f"rerun with {DEBUG_ENV}=1 for the traceback)", file=sys.stderr)
            return RUNTIME_FAILURE
        print(f"{prog}: error: {message_of(exc)}", file=sys.stderr)
        return code


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not os.environ.get(DEBUG_ENV):
        # the graph driver logs each retry and dropped socket on stderr; what failed is
        # reported here, in one line
        logging.getLogger("neo4j").setLevel(logging.CRITICAL)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in STAGES else None)
    args = parser.parse_args(argv)
    return run_command(f"k3m {args.command}", args.func, args)


if __name__ == "__main__":
    sys.exit(main())
