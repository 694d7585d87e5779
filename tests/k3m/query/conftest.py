"""Query-script fixtures: a build of real rows edited to carry injection-hostile text, a
database of its own for tests that write, and a fingerprint of the graph. The micro
checkpoint, its embeddings of the slice and the loaded graph are in tests/k3m/conftest.py."""
from __future__ import annotations

import gzip
import itertools
import json
from types import SimpleNamespace

import pytest

HOSTILE_ID = "10000' OR 1=1 //"
HOSTILE_VALUE = "Nike`]->(v) DELETE v WITH 1 AS x MERGE (:Pwned {k: '{x}'}) //"
HOSTILE_PROPERTY = "Fit} RETURN 1 //`"
HOSTILE_CATEGORY = "Shirts'}) DETACH DELETE i //"


@pytest.fixture
def fresh_loaded_db(open_db, query_build):
    """A database of its own with the 600-item build (for tests that write)."""
    from etl.catalog_build import CatalogBuild
    from kg.graph_load import load_graph

    db = open_db()
    load_graph(CatalogBuild.open(query_build), db)
    return db


@pytest.fixture(scope="session")
def hostile(fashion_dir, query_checkpoint, tmp_path_factory) -> SimpleNamespace:
    """40 real fashion44k rows edited to carry hostile id/value/property/category, imported by
    the real ETL and embedded by the micro checkpoint."""
    from etl.build import import_catalog
    from k3m.embedding.embed import embed_build

    with gzip.open(fashion_dir / "styles.jsonl.gz", "rt", encoding="utf-8") as stream:
        rows = [json.loads(line) for line in itertools.islice(stream, 40)]
    rows[0]["id"] = HOSTILE_ID
    rows[1]["brandName"] = HOSTILE_VALUE
    rows[1]["articleAttributes"] = {**rows[1].get("articleAttributes", {}), HOSTILE_PROPERTY: HOSTILE_VALUE}
    rows[2]["articleType"] = {**rows[2]["articleType"], "typeName": HOSTILE_CATEGORY}
    out = tmp_path_factory.mktemp("query-hostile")
    source = out / "hostile.jsonl"
    source.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    build = out / "build"
    import_catalog([source], "fashion44k", build, images=str(fashion_dir / "images.zip"), workers=0)
    store, _ = embed_build(query_checkpoint, build)
    return SimpleNamespace(build=build, store=store, id=HOSTILE_ID, value=HOSTILE_VALUE,
                           property=HOSTILE_PROPERTY, category=HOSTILE_CATEGORY)


@pytest.fixture(scope="session")
def fingerprint():
    """fingerprint(db) -> counts that any injected write or delete would change."""
    return graph_fingerprint


def graph_fingerprint(db) -> dict:
    q = {
        "nodes": "MATCH (n) RETURN count(n) AS n",
        "has": "MATCH ()-[r:HAS]->() RETURN count(r) AS n",
        "in_category": "MATCH ()-[r:IN_CATEGORY]->() RETURN count(r) AS n",
        "suggested": "MATCH ()-[r:SUGGESTED_VALUE]->() RETURN count(r) AS n",
        "pwned": "MATCH (n:Pwned) RETURN count(n) AS n",
        "x_set": "MATCH (n) WHERE n.x IS NOT NULL RETURN count(n) AS n",
    }
    return {k: db.run(text)[0]["n"] for k, text in q.items()}
