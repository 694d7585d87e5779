"""Fixtures of the embedding consumers (k3m.query, k3m.serve, the ANN index): a real micro
K3M checkpoint (a few real pretraining steps on the 600-item fashion44k slice), its
embeddings of that build, and the real embedded ArcadeDB server with the build loaded."""
from __future__ import annotations

import itertools
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def query_checkpoint(micro_checkpoint) -> Path:
    return micro_checkpoint


@pytest.fixture(scope="session")
def query_build(slice_view) -> Path:
    """The 600-item build seen through symlinks, so embeddings written here stay private."""
    return slice_view("query-builds")


@pytest.fixture(scope="session")
def query_store(query_checkpoint, query_build):
    from k3m.embedding.embed import embed_build

    store, _ = embed_build(query_checkpoint, query_build)
    return store


_databases = itertools.count()


@pytest.fixture(scope="session")
def open_db(kg_server, kg_data_dir):
    """open_db(name=None) -> a GraphDB on database ``name`` (a fresh one when None)."""
    from kg.embedded_server import ServerSettings
    from kg.graph_db import connect

    opened = []

    def open_(name: str | None = None):
        db = connect(database=name or f"q{next(_databases)}", server_settings=ServerSettings(data_dir=kg_data_dir))
        opened.append(db)
        return db

    yield open_
    for db in opened:
        db.close()


def load(db, build_path) -> None:
    from etl.catalog_build import CatalogBuild
    from kg.graph_load import load_graph

    load_graph(CatalogBuild.open(build_path), db)


@pytest.fixture(scope="session")
def loaded_db(open_db, query_build, query_store):
    """The 600-item build in the graph with its embeddings written back (read-only use)."""
    from k3m.embedding.writeback import write_back

    db = open_db()
    load(db, query_build)
    write_back(db, query_store)
    return db


