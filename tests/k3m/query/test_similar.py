"""`k3m query similar`: readable results from the graph, constraints honoured, CLI and Python."""
from __future__ import annotations

import json

import pytest

from k3m.cli import main
from k3m.query import ItemFilter, similar_items
from k3m.query.similar import brand_property
from k3m.query.vector_search import VectorSearchError


def cli(kg_data_dir, loaded_db, *args) -> list[str]:
    return ["query", "similar", *args, "--data-dir", str(kg_data_dir), "--database", loaded_db.database]


def test_hits_carry_graph_details_and_meet_the_constraint(loaded_db, query_store):
    result = similar_items(loaded_db, "10017", 5, ItemFilter(same=("brandName",)), query_store, show=("brandName",))
    brand = loaded_db.run("MATCH (:Item {id: '10017'})-[:HAS {property: 'brandName'}]->(v) RETURN v.text AS b")[0]["b"]
    assert result.strategy == "client" and result.model_id == query_store.model_id
    assert result.item.id == "10017" and result.item.title and result.item.properties == {"brandName": brand}
    assert 0 < len(result.hits) <= 5 and "10017" not in [h.id for h in result.hits]
    for hit in result.hits:
        assert hit.properties["brandName"] == brand and hit.title and hit.category
    assert [h.score for h in result.hits] == sorted((h.score for h in result.hits), reverse=True)
    text = result.render()
    assert "same brandName as the item" in text and result.hits[0].title[:20] in text


def test_cli_table_and_json(kg_data_dir, loaded_db, query_build, capsys):
    assert main(cli(kg_data_dir, loaded_db, "10000", "--k", "3", "--category", "Tshirts", "--build", str(query_build))) == 0
    out = capsys.readouterr().out
    assert "Items similar to 10000" in out and "category 'Tshirts'" in out and len(out.splitlines()) == 6  # heading, columns, rule, 3 rows
    assert main(cli(kg_data_dir, loaded_db, "10000", "--k", "3", "--json")) == 0  # build found through the graph
    doc = json.loads(capsys.readouterr().out)
    scores = [h["score"] for h in doc["hits"]]
    assert len(scores) == 3 and scores == sorted(scores, reverse=True) and "10000" not in [h["id"] for h in doc["hits"]]
    assert doc["item"]["id"] == "10000" and doc["strategy"] == "client"


def test_cli_where_and_errors(kg_data_dir, loaded_db, capsys):
    assert main(cli(kg_data_dir, loaded_db, "10000", "--where", "baseColour=Black", "--json")) == 0
    ids = [h["id"] for h in json.loads(capsys.readouterr().out)["hits"]]
    black = {r["id"] for r in loaded_db.run(
        "MATCH (i:Item)-[:HAS {property: 'baseColour'}]->(:Value {text: 'Black'}) RETURN i.id AS id")}
    assert ids and set(ids) <= black
    assert main(cli(kg_data_dir, loaded_db, "nope")) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"k3m query: error: item 'nope' is not in database {loaded_db.database!r}; databases: ")
    assert f"{loaded_db.database} (build " in err and err.count("\n") == 1
    assert main(cli(kg_data_dir, loaded_db, "10000", "--where", "baseColour")) == 2
    assert "PROPERTY=VALUE" in capsys.readouterr().err


def test_help_lists_every_constraint(capsys):
    with pytest.raises(SystemExit):
        main(["query", "similar", "--help"])
    text = capsys.readouterr().out
    for flag in ("--same-brand", "--where", "--category", "--no-image", "--json", "--strategy"):
        assert flag in text


def test_a_build_remembers_its_database_and_not_found_lists_them(kg_data_dir, query_build, query_store, slice_view,
                                                                  open_db, capsys):
    """`k3m kg load BUILD --database X` then `k3m query similar ID --build BUILD`: X is used;
    an item a database lacks is exit 2 naming the databases and what they hold."""
    view = slice_view("remembered")
    (view / "embeddings").symlink_to(query_build / "embeddings")
    database = "remembered_db"
    base = ["--data-dir", str(kg_data_dir)]
    assert main(["kg", "load", str(view), "--graph", "--database", database, *base]) == 0
    capsys.readouterr()
    assert main(["query", "similar", "10000", "--k", "3", "--build", str(view), "--json", *base]) == 0
    assert len(json.loads(capsys.readouterr().out)["hits"]) == 3
    empty = open_db()  # a database holding nothing
    assert main(["query", "similar", "10000", "--database", empty.database, *base]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"k3m query: error: item '10000' is not in database {empty.database!r}; databases: ")
    assert f"{empty.database} (no build loaded)" in err and f"{database} (build {view.resolve()}, 600 items)" in err
    assert main(["query", "similar", "10000", "--database", "no_such_db", *base]) == 2
    assert "database 'no_such_db' does not exist" in capsys.readouterr().err


def test_without_embeddings_it_says_what_is_missing(kg_data_dir, fresh_loaded_db, capsys):
    with pytest.raises(VectorSearchError, match="'10000' has no embedding in database .*k3m embed"):
        similar_items(fresh_loaded_db, "10000", 5, store=None)
    assert main(cli(kg_data_dir, fresh_loaded_db, "10000", "--strategy", "cypher")) == 2
    assert "has no embedding" in capsys.readouterr().err


def test_same_brand_and_property_names_come_from_the_graph(kg_data_dir, loaded_db, capsys):
    assert brand_property(["baseColour", "brandName", "gender"]) == "brandName"
    assert brand_property(["Brand", "colour"]) == "Brand"
    with pytest.raises(LookupError, match="no property of this graph is named like 'brand'"):
        brand_property(["colour", "size"])
    with pytest.raises(LookupError, match="several properties"):
        brand_property(["brand_en", "brand_local"])
    # fashion44k: brandName on every item, Brand and Brand Fit Name in a few items' attributes
    names = ["Brand", "Brand Fit Name", "brandName", "gender"]
    with pytest.raises(LookupError, match="several properties"):
        brand_property(names)
    assert brand_property(names, {"Brand": 40, "Brand Fit Name": 3, "brandName": 44000}) == "brandName"
    with pytest.raises(LookupError, match="several properties"):
        brand_property(names, {"Brand": 30000, "brandName": 44000})
    assert main(cli(kg_data_dir, loaded_db, "10000", "--where", "Fabrik=Cotton")) == 2
    assert capsys.readouterr().err.startswith(f"k3m query: error: property 'Fabrik' is not in database "
                                              f"{loaded_db.database!r} (close: Fabric")
