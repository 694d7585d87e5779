"""Hostile ids, properties, values and categories (real rows edited) stay inert: they travel
as parameters, match exactly what they name, and change nothing in the graph."""
from __future__ import annotations

import json

import pytest

from etl.catalog_build import CatalogBuild
from k3m.cli import main
from k3m.embedding.writeback import write_back
from k3m.query import CompletionSettings, ItemFilter, complete_attributes, export_items, similar_items
from kg.cypher import run_cypher


@pytest.fixture(scope="module")
def hostile_db(open_db, hostile):
    from kg.graph_load import load_graph

    db = open_db()
    load_graph(CatalogBuild.open(hostile.build), db)
    write_back(db, hostile.store)
    return db


def test_similar_with_hostile_id_and_constraints(hostile_db, hostile, fingerprint):
    before = fingerprint(hostile_db)
    assert before["pwned"] == 0
    plain = similar_items(hostile_db, hostile.id, 5, store=hostile.store)
    assert plain.item.id == hostile.id and len(plain.hits) == 5
    # item 1 carries the hostile brand and the hostile property: it is the only match
    for item_filter in (ItemFilter(equals=((hostile.property, hostile.value),)), ItemFilter(equals=(("brandName", hostile.value),))):
        hits = similar_items(hostile_db, hostile.id, 5, item_filter, hostile.store).hits
        assert [h.id for h in hits] == [hostile.store.ids[1]]
    hits = similar_items(hostile_db, hostile.id, 5, ItemFilter(category=hostile.category), hostile.store).hits
    assert [h.id for h in hits] == [hostile.store.ids[2]] and hits[0].category == hostile.category
    # the hostile item is the build's only one without an image
    hits = similar_items(hostile_db, hostile.store.ids[5], 5, ItemFilter(has_image=False), hostile.store).hits
    assert [h.id for h in hits] == [hostile.id]
    for strategy in ("client", "cypher"):
        same = similar_items(hostile_db, hostile.store.ids[1], 5, ItemFilter(same=(hostile.property,)), hostile.store, strategy)
        assert same.hits == []  # nobody else shares the hostile value
    assert fingerprint(hostile_db) == before


def test_cli_with_hostile_arguments(kg_data_dir, hostile_db, hostile, fingerprint, capsys):
    before = fingerprint(hostile_db)
    base = ["--data-dir", str(kg_data_dir), "--database", hostile_db.database, "--build", str(hostile.build)]
    assert main(["query", "similar", hostile.id, "--where", f"{hostile.property}={hostile.value}", "--json", *base]) == 0
    assert [h["id"] for h in json.loads(capsys.readouterr().out)["hits"]] == [hostile.store.ids[1]]
    assert main(["kg", "cypher", "MATCH (i:Item {id: $id}) RETURN i.id AS id", "--param", f"id={hostile.id}",
                 "--json", *base[:4]]) == 0
    assert json.loads(capsys.readouterr().out) == [{"id": hostile.id}]
    assert fingerprint(hostile_db) == before


def test_completion_and_export_with_hostile_property(hostile_db, hostile, fingerprint, tmp_path):
    before = fingerprint(hostile_db)
    build = CatalogBuild.open(hostile.build)
    report = complete_attributes(hostile_db, hostile.store, build, hostile.property, CompletionSettings(min_category_share=0.0001))
    after = fingerprint(hostile_db)
    assert report.items_suggested > 0
    assert after == {**before, "suggested": before["suggested"] + report.suggestions_written}
    values = run_cypher(hostile_db, "MATCH ()-[s:SUGGESTED_VALUE {property: $p}]->(v) RETURN DISTINCT v.text AS v",
                        {"p": hostile.property}).rows
    assert values == [{"v": hostile.value}]  # the property's only known value, stored verbatim
    out = export_items(hostile_db, hostile.store, "MATCH (i:Item {id: $id}) RETURN i.id AS id", {"id": hostile.id},
                       tmp_path / "h.parquet")
    assert out.items == 1 and fingerprint(hostile_db) == after
