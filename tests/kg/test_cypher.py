"""`k3m kg cypher` / kg.cypher.run_cypher: parameterized Cypher as a table or JSON, and a
query the server refuses as one clear error (exit 2)."""
from __future__ import annotations

import json

import pytest

from etl.catalog_build import CatalogBuild
from k3m.cli import main
from kg.cypher import CypherQueryError, run_cypher
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
