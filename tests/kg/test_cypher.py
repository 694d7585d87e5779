"""`k3m kg cypher` / kg.cypher.run_cypher: parameterized Cypher as a table or JSON, and a
query the server refuses as one clear error (exit 2)."""
from __future__ import annotations

import json

import pytest

from etl.catalog_build import CatalogBuild
from k3m.cli import main
from kg.cypher import CypherQueryError, CypherWriteRefused, run_cypher
from kg.graph_load import load_graph


@pytest.fixture(scope="module")
def shop(graph_db_module, fashion_slice_build):
    load_graph(CatalogBuild.open(fashion_slice_build), graph_db_module)
    return graph_db_module


@pytest.fixture(scope="module")
def graph_db_module(kg_server, kg_data_dir):
    from kg.embedded_server import ServerSettings
    from kg.graph_db import connect

    with connect(database="cypher_cli", server_settings=ServerSettings(data_dir=kg_data_dir)) as db:
        yield db


def k3m(capsys, kg_data_dir, db, *argv) -> tuple[int, str, str]:
    code = main(["kg", "cypher", *argv, "--data-dir", str(kg_data_dir), "--database", db.database])
    out, err = capsys.readouterr()
    return code, out, err


def test_run_cypher_rows_and_columns(shop):
    result = run_cypher(shop, "MATCH (i:Item)-[:IN_CATEGORY]->(c:Category {name: $c}) "
                              "RETURN c.name AS category, count(i) AS n", {"c": "Watches"})
    assert result.columns == ["category", "n"] and result.rows == [{"category": "Watches", "n": 88}]
    assert "Watches" in result.render() and "(1 row, " in result.render()
    empty = run_cypher(shop, "MATCH (i:Item {id: $id}) RETURN i.title AS title", {"id": "nope"})
    assert empty.rows == [] and empty.render().startswith("(no rows)\n(0 rows, ")


def test_cli_params_string_and_json(kg_data_dir, shop, capsys):
    code, out, _ = k3m(capsys, kg_data_dir, shop, "MATCH (i:Item) WHERE i.id IN $ids RETURN i.id AS id ORDER BY id LIMIT $n",
                       "--param-json", 'ids=["10000","10017"]', "--param-json", "n=5", "--json")
    assert code == 0 and json.loads(out) == [{"id": "10000"}, {"id": "10017"}]
    code, out, _ = k3m(capsys, kg_data_dir, shop, "MATCH (i:Item {id: $id}) RETURN i.title AS title", "--param", "id=10000")
    lines = out.splitlines()
    title = shop.run("MATCH (i:Item {id:'10000'}) RETURN i.title AS t")[0]["t"]
    assert code == 0 and lines[0].strip() == "title" and lines[2].strip() == title and lines[3].startswith("(1 row, ")


def test_bad_input_is_one_clear_error(kg_data_dir, shop, capsys):
    code, _, err = k3m(capsys, kg_data_dir, shop, "RETURN 1", "--param", "novalue")
    assert code == 2 and err == "k3m kg: error: parameter 'novalue' is not NAME=VALUE\n"
    code, _, err = k3m(capsys, kg_data_dir, shop, "RETURN 1", "--param-json", "x={bad")
    assert code == 2 and err.startswith("k3m kg: error: --param-json x: not JSON")
    code, out, err = k3m(capsys, kg_data_dir, shop, "MATCH (n) RETURN n LIMT 1")
    assert code == 2 and out == "" and err.startswith("k3m kg: error: the server refused the query: ")
    assert "LIMT" in err and "Traceback" not in err and "gql_status" not in err
    code, _, err = k3m(capsys, kg_data_dir, shop, "RETURN $x AS x")
    assert code == 2 and "x" in err and "Traceback" not in err
    with pytest.raises(CypherQueryError):
        run_cypher(shop, "RETURN nosuchfunction(1)")


def _graph_state(db) -> dict:
    """Everything a write could touch: nodes by label, relationships, properties, the schema."""
    return {
        "nodes": db.run("MATCH (n) RETURN labels(n) AS l, count(*) AS c ORDER BY c, l"),
        "relationships": db.run("MATCH ()-[r]->() RETURN type(r) AS t, count(*) AS c ORDER BY t"),
        "items": db.run("MATCH (i:Item) RETURN collect([i.id, i.title, i.category, i.load_hash]) AS r")[0]["r"],
        "has": db.run("MATCH ()-[h:HAS]->() RETURN collect(h.property) AS p")[0]["p"],
        "indexes": sorted(r["name"] for r in db.run("SHOW INDEXES YIELD name RETURN name")),
    }


WRITES = [
    "CREATE (:Item {id: 'pwned'})",
    "create (:Pwned)",
    "/* a comment */ CrEaTe (:Pwned)",
    "// a line comment\nCREATE (:Pwned)",
    "  \n\tMERGE (:Value {text: 'merged'})",
    "MATCH (i:Item {id: '10000'}) SET i.title = 'changed'",
    "MATCH (i:Item {id: '10000'}) SET i += {title: 'changed'}",
    "MATCH (i:Item {id: '10000'}) SET i:Pwned",
    "MATCH (i:Item {id: '10000'}) REMOVE i.title",
    "MATCH (i:Item {id: '10000'}) DETACH DELETE i",
    "MATCH (:Item {id: '10000'})-[h:HAS]->() DELETE h",
    "MATCH ()-[h:HAS]->() WITH h LIMIT 1 SET h.property = 'x'",
    "MATCH (i:Item) WITH i LIMIT 1 CALL { WITH i SET i.x = 1 } RETURN 1 AS one",
    "UNWIND [1] AS x CALL { CREATE (:Pwned) } RETURN x",
    "CALL { CREATE (:Pwned) } IN TRANSACTIONS",
    "FOREACH (x IN [1] | CREATE (:Pwned))",
    "MATCH (i:Item {id: '10000'}) RETURN i.id AS id UNION ALL MATCH (j:Item {id: '10001'}) SET j.x = 1 RETURN j.id AS id",
    "MATCH (i:Item {id: $id}) SET i.title = $title RETURN i.id",
    "DROP CONSTRAINT k3m_item_id",
    "CREATE INDEX pwned IF NOT EXISTS FOR (n:Item) ON (n.title)",
    "DROP INDEX `Item[id]`",
    "CREATE USER mallory SET PASSWORD 'secret'",
]


@pytest.mark.parametrize("query", WRITES)
def test_cypher_is_read_only_without_write(kg_data_dir, shop, capsys, query):
    """Writes used to run (`CREATE`, `DETACH DELETE`), and a later `kg load` kept what they
    created. ArcadeDB ignores the READ access mode, so this checks the real server."""
    before = _graph_state(shop)
    code, out, err = k3m(capsys, kg_data_dir, shop, query, "--param", "id=10000", "--param", "title=changed")
    assert (code, out) == (2, "") and err.count("\n") == 1
    assert err.startswith("k3m kg: error: the query writes to the graph") and "--write" in err
    assert _graph_state(shop) == before
    with pytest.raises(CypherWriteRefused):
        run_cypher(shop, query, {"id": "10000", "title": "changed"})
    assert _graph_state(shop) == before


def test_reads_still_run_and_write_runs_writes(kg_data_dir, shop, capsys):
    for query in ("MATCH (i:Item) RETURN count(*) AS n", "CALL db.labels() YIELD label RETURN label",
                  "MATCH (i:Item) WITH i ORDER BY i.id LIMIT 2 RETURN i.id AS id", "SHOW INDEXES YIELD name RETURN name",
                  "RETURN 'CREATE (:X)' AS text, $t AS t"):
        code, out, err = k3m(capsys, kg_data_dir, shop, query, "--param", "t=DELETE")
        assert code == 0 and err == "" and "row" in out, query
    code, _, _ = k3m(capsys, kg_data_dir, shop, "CREATE (:Scratch {k: $k})", "--param", "k=1", "--write")
    assert code == 0 and shop.run("MATCH (s:Scratch) RETURN s.k AS k") == [{"k": "1"}]
    code, _, _ = k3m(capsys, kg_data_dir, shop, "MATCH (s:Scratch) DELETE s", "--write")
    assert code == 0 and shop.run("MATCH (s:Scratch) RETURN count(s) AS n") == [{"n": 0}]


def test_a_write_the_parser_check_misses_is_rolled_back(shop, monkeypatch):
    """The second guard: a read transaction whose summary reports a change is rolled back,
    on the real server (the first guard, ArcadeDB's own parser, is switched off here)."""
    monkeypatch.setattr(type(shop.server), "writes", lambda self, database, query, params=None: False)
    before = _graph_state(shop)
    for query in ("CREATE (:Item {id: 'pwned'})", "MATCH (i:Item {id: '10000'}) DETACH DELETE i",
                  "MATCH (i:Item {id: '10000'}) SET i.title = 'changed'"):
        with pytest.raises(CypherWriteRefused):
            run_cypher(shop, query)
        assert _graph_state(shop) == before
