"""GraphDB against the real embedded server: capabilities, parameters, batches, transactions."""
from __future__ import annotations

import pytest

from kg.graph_db import connect


def test_capabilities_are_probed_not_assumed(graph_db):
    caps = graph_db.capabilities
    assert "ArcadeDB" in caps.agent
    assert caps.vector_similarity_function is True
    assert caps.native_vector_index is False  # ArcadeDB's Bolt refuses CREATE VECTOR INDEX
    assert graph_db.is_embedded


def test_write_batches_sums_counters_and_parameters_stay_data(graph_db):
    texts = [f"v{i}" for i in range(25)] + ["'}) DETACH DELETE n //", "a\nMATCH (n) DELETE n\r\n// `x` {y}"]
    counters = graph_db.write_batches("UNWIND $rows AS t CREATE (:Probe {text: t, tag: $tag})", texts, batch_size=7, tag="a`b")
    assert counters["nodes_created"] == len(texts)
    rows = graph_db.run("MATCH (p:Probe) RETURN p.text AS text, p.tag AS tag ORDER BY text")
    assert sorted(r["text"] for r in rows) == sorted(texts) and {r["tag"] for r in rows} == {"a`b"}


def test_write_transaction_is_all_or_nothing(graph_db):
    def work(tx):
        tx.run("CREATE (:Probe {n: 1})").consume()
        raise RuntimeError("abort after the first statement")

    with pytest.raises(RuntimeError, match="abort"):
        graph_db.write_transaction(work)
    assert graph_db.run("MATCH (p:Probe) RETURN count(p) AS n")[0]["n"] == 0


def test_batch_size_must_be_positive(graph_db):
    with pytest.raises(ValueError):
        graph_db.write_batches("RETURN 1", [1], batch_size=0)


def test_neo4j_environment_selects_that_server(kg_server, monkeypatch):
    """NEO4J_URI/USER/PASSWORD win over the embedded default (here pointed at a real Bolt server)."""
    monkeypatch.setenv("NEO4J_URI", kg_server.uri)
    monkeypatch.setenv("NEO4J_USER", "root")
    monkeypatch.setenv("NEO4J_PASSWORD", kg_server.password)
    monkeypatch.setenv("NEO4J_DATABASE", kg_server.database)
    with connect() as db:
        assert not db.is_embedded and db.database == kg_server.database
        assert db.run("RETURN $s AS s", s="ok")[0]["s"] == "ok"
