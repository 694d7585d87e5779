"""How the query scripts reach the graph and the build's embeddings.

The graph: ``kg.graph_db.connect`` (Neo4j when ``NEO4J_URI`` is set, else the embedded
server of the data directory, reused or started for the command). The database: ``--database``,
else the one the ``--build`` was loaded into (``BUILD/graph.json``), else the server's default;
a query never creates a database. The embeddings: the build named on the command line, or
else the build the graph was loaded from (the ``(:PKG {name: "k3m"})`` node records its
path), at its newest model unless one is named.
"""
from __future__ import annotations

import os
from pathlib import Path

from etl.errors import UserError
from k3m.embedding.store import EmbeddingStore, EmbeddingStoreError

PKG_BUILD = "MATCH (m:PKG {name: $name}) RETURN m.build AS build"
PKG_SUMMARY = "MATCH (m:PKG {name: $name}) RETURN m.build AS build, m.items AS items"


class EmbeddingsMissing(UserError, EmbeddingStoreError):
    """The build has no (matching) embeddings: `k3m embed` first."""


class ItemNotFound(UserError, LookupError):
    """The item is not in the database queried; the message lists the databases there are."""


def apply_data_dir(data_dir: Path | None) -> None:
    """``--data-dir`` means the same as ``K3M_DATA_DIR`` (as in `k3m kg`)."""
    if data_dir is not None:
        from kg.paths import DATA_DIR_ENV

        os.environ[DATA_DIR_ENV] = str(Path(data_dir).resolve())


def open_graph(database: str | None = None, build: str | Path | None = None, create: bool = False):
    """A GraphDB on ``database``, else the database ``build`` was loaded into, else the default.

    ``create`` (writers only): an embedded database that does not exist is created."""
    from kg import loaded_into
    from kg.graph_db import connect

    import_driver_without_pandas()
    return connect(database=database or loaded_into.database_of(build), create=create)


def import_driver_without_pandas() -> None:
    """Import the ``neo4j`` driver without its optional pandas support.

    The driver imports pandas whenever it is installed (``neo4j._optional_deps``: for
    ``Result.to_df`` and pandas values as parameters, neither of which the queries use),
    which is a third of a `k3m query` call's start (0.3-0.8 s). Hidden while the driver
    loads, pandas stays importable for the code that reads build tables."""
    import sys

    if "neo4j" in sys.modules or "pandas" in sys.modules:
        return
    sys.modules["pandas"] = None  # `import pandas` raises ImportError, which the driver skips
    try:
        import neo4j  # noqa: F401
    finally:
        del sys.modules["pandas"]


def graph_build_path(db) -> Path | None:
    """The build directory the graph was loaded from, if the graph says so and it exists."""
    from kg.graph_load import PKG_NAME

    rows = db.run(PKG_BUILD, name=PKG_NAME)
    path = Path(rows[0]["build"]) if rows and rows[0]["build"] else None
    return path if path is not None and path.is_dir() else None


def locate_store(db, build: str | Path | None = None, model_id: str | None = None, required: bool = False) -> EmbeddingStore | None:
    """The embeddings to search: of ``build`` (or the graph's build), ``model_id`` (or newest).

    None when there are none and not ``required`` (search then falls back to the graph).
    """
    path = Path(build) if build is not None else graph_build_path(db)
    if path is None:
        if required:
            raise EmbeddingsMissing(f"database {db.database!r} names no build (nothing loaded into it?) and no --build "
                                    f"was given; {databases_note(db)}")
        return None
    try:
        return EmbeddingStore.open(path, model_id)
    except EmbeddingStoreError as exc:
        if required or build is not None or model_id is not None:
            raise EmbeddingsMissing(str(exc)) from None
        return None


def databases_note(db) -> str:
    """What each database of the server holds, for 'not found' messages."""
    from kg.graph_db import connect
    from kg.graph_load import PKG_NAME

    parts = []
    for name in db.database_names():
        try:
            if name == db.database:
                rows = db.run(PKG_SUMMARY, name=PKG_NAME)
            else:
                with connect(database=name, create=False) as other:
                    rows = other.run(PKG_SUMMARY, name=PKG_NAME)
        except Exception:  # noqa: BLE001 - a note in an error message must not fail itself
            rows = []
        held = f"build {rows[0]['build']}, {rows[0]['items']} items" if rows and rows[0]["build"] else "no build loaded"
        parts.append(f"{name} ({held})")
    if not parts:
        return "pass --database NAME"
    return "databases: " + "; ".join(parts) + " - pass --database NAME"


def require_item(db, item_id: str) -> None:
    """ItemNotFound, saying which databases exist, unless ``item_id`` is in ``db``."""
    if not db.run("MATCH (i:Item {id: $id}) RETURN count(i) AS n", id=str(item_id))[0]["n"]:
        raise ItemNotFound(f"item {item_id!r} is not in database {db.database!r}; {databases_note(db)}")


def add_graph_arguments(parser) -> None:
    parser.add_argument("--database", help="graph database (default: the one --build was loaded into, else k3m)")
    parser.add_argument("--data-dir", type=Path, help="state directory of the embedded graph (default $K3M_DATA_DIR or ./data)")
    parser.add_argument("--json", action="store_true", help="machine-readable JSON instead of a table")


def add_store_arguments(parser) -> None:
    parser.add_argument("--build", type=Path, help="catalog build holding the embeddings (default: the one the graph was loaded from)")
    parser.add_argument("--model", dest="model_id", help="embeddings of this model id (default: the newest in the build)")
