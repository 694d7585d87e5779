"""`k3m query cypher`: parameterized Cypher printed as a table or JSON."""
from __future__ import annotations

import json

from k3m.cli import main
from k3m.query import run_cypher


def test_run_cypher_rows_and_columns(loaded_db):
    result = run_cypher(loaded_db, "MATCH (i:Item)-[:IN_CATEGORY]->(c:Category {name: $c}) "
                                   "RETURN c.name AS category, count(i) AS n", {"c": "Watches"})
    assert result.columns == ["category", "n"] and result.rows == [{"category": "Watches", "n": 88}]
    assert "Watches" in result.render() and "(1 rows" in result.render()


def test_cli_params_string_and_json(kg_data_dir, loaded_db, capsys):
    base = ["--data-dir", str(kg_data_dir), "--database", loaded_db.database]
    assert main(["query", "cypher", "MATCH (i:Item) WHERE i.id IN $ids RETURN i.id AS id ORDER BY id LIMIT $n",
                 "--param-json", 'ids=["10000","10017"]', "--param-json", "n=5", "--json", *base]) == 0
    assert [r["id"] for r in json.loads(capsys.readouterr().out)["rows"]] == ["10000", "10017"]
    assert main(["query", "cypher", "MATCH (i:Item {id: $id}) RETURN i.title AS title", "--param", "id=10000", *base]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].strip() == "title" and out[2].strip() == loaded_db.run("MATCH (i:Item {id:'10000'}) RETURN i.title AS t")[0]["t"]
    assert main(["query", "cypher", "RETURN 1", "--param", "novalue", *base]) == 2
    assert main(["query", "cypher", "RETURN 1", "--param-json", "x={bad", *base]) == 2
