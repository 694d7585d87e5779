"""How the query scripts reach the graph and the build's embeddings.

The graph: ``kg.graph_db.connect`` (Neo4j when ``NEO4J_URI`` is set, else the embedded
server of the data directory, reused or started for the command). The embeddings: the
build named on the command line, or else the build the graph was loaded from (the
``(:PKG {name: "k3m"})`` node records its path), at its newest model unless one is named.
"""
from __future__ import annotations

import os
from pathlib import Path

from k3m.embedding.store import EmbeddingStore, EmbeddingStoreError

PKG_BUILD = "MATCH (m:PKG {name: $name}) RETURN m.build AS build"


def apply_data_dir(data_dir: Path | None) -> None:
    """``--data-dir`` means the same as ``K3M_DATA_DIR`` (as in `k3m kg`)."""
    if data_dir is not None:
        from kg.paths import DATA_DIR_ENV

        os.environ[DATA_DIR_ENV] = str(Path(data_dir).resolve())


def open_graph(database: str | None = None):
    from kg.graph_db import connect

    return connect(database=database)


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
            raise EmbeddingStoreError("no build given and the graph names none; pass --build BUILD")
        return None
    try:
        return EmbeddingStore.open(path, model_id)
    except EmbeddingStoreError:
        if required or build is not None or model_id is not None:
            raise
        return None


def add_graph_arguments(parser) -> None:
    parser.add_argument("--database", help="graph database (embedded default: k3m)")
    parser.add_argument("--data-dir", type=Path, help="state directory of the embedded graph (default $K3M_DATA_DIR or ./data)")
    parser.add_argument("--json", action="store_true", help="machine-readable JSON instead of a table")


def add_store_arguments(parser) -> None:
    parser.add_argument("--build", type=Path, help="catalog build holding the embeddings (default: the one the graph was loaded from)")
    parser.add_argument("--model", dest="model_id", help="embeddings of this model id (default: the newest in the build)")
