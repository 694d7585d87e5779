"""The whole fashion44k catalog, end to end: import → RDF → graph database.

The foundation's acceptance figures, checked on the real catalog rather than a slice:
44,441 items, 44,072 images ok, 369 missing, no rejects, 561,280 triples over 201
properties, and the same triple count back from SPARQL and from Cypher. About a minute
and a half on 2 cores, most of it the graph load.
"""
from __future__ import annotations

import pytest

from etl.build import import_catalog
from etl.catalog_build import CatalogBuild
from kg.graph_load import load_graph
from kg.rdf_store import load_rdf, open_rdf, sparql

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def full_build(fashion_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("fashion44k") / "build"
    import_catalog([fashion_dir / "styles.jsonl.gz"], "fashion44k", out)
    return CatalogBuild.open(out)


def test_import_summary(full_build):
    summary = full_build.summary
    assert summary["rows_read"] == summary["items"] == 44441
    assert summary["rejected"] == {} and summary["rejected_rows"] == 0
    assert summary["images"] == {"ok": 44072, "missing": 369, "bad": 0, "refused": 0}
    assert summary["triples"] == len(full_build.triples) == 561280
    assert summary["properties"] == len(full_build.properties) == 201


def test_sparql_and_cypher_count_the_same_triples(full_build, graph_db, tmp_path):
    load_rdf(full_build, tmp_path / "rdf")
    rdf = open_rdf(tmp_path / "rdf")
    (row,) = sparql(rdf, "SELECT (COUNT(*) AS ?n) WHERE { ?p a rdf:Property . ?i ?p ?v }")
    report = load_graph(full_build, graph_db)
    (cypher,) = graph_db.run("MATCH (:Item)-[h:HAS]->(:Value) RETURN count(h) AS n")
    assert int(row.n) == cypher["n"] == report.triples_created == 561280
