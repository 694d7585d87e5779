"""Loading builds into the real embedded graph database: round trip, idempotence, updates,
items without triples, and catalog text that would be an injection if it became query text."""
from __future__ import annotations

from collections import Counter

import numpy as np

from etl.catalog_build import CatalogBuild
from kg.graph_load import load_graph


def _build_triples(build: CatalogBuild) -> Counter:
    ids, props, values = build.items["item_id"].tolist(), build.properties, build.values
    return Counter((ids[i], props[p], values[v]) for i, p, v in np.asarray(build.triples).tolist())


def _graph_triples(db) -> Counter:
    rows = db.run("MATCH (i:Item)-[h:HAS]->(v:Value) RETURN i.id AS i, h.property AS p, v.text AS v")
    return Counter((r["i"], r["p"], r["v"]) for r in rows)


def _count(db, pattern: str) -> int:
    return db.run(f"MATCH {pattern} RETURN count(*) AS n")[0]["n"]


def test_round_trip_matches_the_build(graph_db, fashion_slice_build):
    build = CatalogBuild.open(fashion_slice_build)
    report = load_graph(build, graph_db)
    assert report.items_created == build.num_items and report.triples_created == len(build.triples)
    assert _count(graph_db, "(:Item)") == build.num_items
    assert _count(graph_db, "(:Value)") == len(build.values)
    assert _count(graph_db, "(:Property)") == len(build.properties)
    assert _count(graph_db, "(:Item)-[:HAS]->(:Value)") == len(build.triples)
    assert _graph_triples(graph_db) == _build_triples(build)
    with_category = int(build.items["category"].notna().sum())
    assert _count(graph_db, "(:Item)-[:IN_CATEGORY]->(:Category)") == with_category
    first = build.items.iloc[0]
    item = graph_db.run("MATCH (i:Item {id: $id}) RETURN i {.*} AS i", id=first["item_id"])[0]["i"]
    assert (item["title"], item["category"], item["split"], item["has_image"]) == (
        first["title"], first["category"], first["split"], bool(first["has_image"]))
    marker = graph_db.run("MATCH (m:PKG) RETURN m {.*} AS m")[0]["m"]
    assert marker["complete"] is True and marker["triples"] == len(build.triples) and marker["items"] == build.num_items
    names = {r["name"] for r in graph_db.run("SHOW CONSTRAINTS YIELD name RETURN name")}
    assert {"k3m_item_id", "k3m_value_text", "k3m_property_name", "k3m_category_name"} <= names


def test_second_load_creates_nothing(graph_db, fashion_slice_build):
    build = CatalogBuild.open(fashion_slice_build)
    load_graph(build, graph_db)
    before = (_count(graph_db, "(n)"), _count(graph_db, "()-[r]->()"))
    again = load_graph(build, graph_db)
    assert (again.nodes_created, again.relationships_created, again.relationships_deleted) == (0, 0, 0)
    assert again.items_unchanged == build.num_items and again.items_created == again.items_updated == 0
    assert (_count(graph_db, "(n)"), _count(graph_db, "()-[r]->()")) == before


def test_hostile_catalog_text_is_stored_verbatim_and_inert(graph_db, hostile_build, hostile):
    build = CatalogBuild.open(hostile_build)
    load_graph(build, graph_db)
    assert _graph_triples(graph_db) == _build_triples(build)
    titles = {r["id"]: r["t"] for r in graph_db.run("MATCH (i:Item) RETURN i.id AS id, i.title AS t")}
    assert titles == dict(zip(build.items["item_id"], build.items["title"]))
    # The ETL folds whitespace in titles; everything else of the hostile text reached the graph.
    assert titles[hostile.id] and " ".join(hostile.title.split()) in titles.values()
    assert " ".join(hostile.title_2.split()) in titles.values()
    assert graph_db.run("MATCH (v:Value {text: $t}) RETURN count(v) AS n", t=hostile.value)[0]["n"] == 1
    pair = graph_db.run("MATCH (:Item)-[h:HAS {property: $p}]->(v:Value) RETURN v.text AS v", p=hostile.property)
    assert [r["v"] for r in pair] == [" ".join(hostile.property_value.split())]
    # Nothing the strings "say" happened: no new labels, nothing deleted, constraints intact.
    labels = {r["label"] for r in graph_db.run("CALL db.labels() YIELD label RETURN label")}
    assert labels <= {"Item", "Value", "Property", "Category", "PKG"}
    assert _count(graph_db, "(:Item)") == build.num_items
    assert "k3m_item_id" in {r["name"] for r in graph_db.run("SHOW CONSTRAINTS YIELD name RETURN name")}


def test_item_without_triples_is_a_node_without_has_edges(graph_db, hostile_build):
    build = CatalogBuild.open(hostile_build)
    empty = np.flatnonzero(np.diff(build.item_triple_offsets) == 0)
    assert len(empty) == 1
    item_id = build.items["item_id"].iloc[int(empty[0])]
    load_graph(build, graph_db)
    row = graph_db.run(
        "MATCH (i:Item {id: $id}) OPTIONAL MATCH (i)-[h:HAS]->() RETURN count(h) AS n, i.title AS t", id=item_id)
    assert row == [{"n": 0, "t": build.items["title"].iloc[int(empty[0])]}]


def test_changed_items_are_rewritten_and_keep_other_properties(graph_db, hostile_build, hostile_build_edited):
    old, new = CatalogBuild.open(hostile_build), CatalogBuild.open(hostile_build_edited)
    load_graph(old, graph_db)
    graph_db.write("MATCH (i:Item) SET i.embedding = [0.5, 0.25]")  # written later by `k3m embed`
    report = load_graph(new, graph_db)
    assert (report.items_updated, report.items_created) == (2, 0)
    assert _graph_triples(graph_db) == _build_triples(new)
    assert _count(graph_db, "(:Item)-[:IN_CATEGORY]->(:Category)") == int(new.items["category"].notna().sum())
    titles = set(r["t"] for r in graph_db.run("MATCH (i:Item) RETURN i.title AS t"))
    assert titles == set(new.items["title"].tolist())
    assert _count(graph_db, "(i:Item) WHERE i.embedding IS NULL") == 0
    assert load_graph(new, graph_db).items_unchanged == new.num_items
