"""Incremental sync of the graph database: a build updated in place (`k3m import --update`)
is loaded by applying its sync.json, and the graph then equals a fresh load of that build.

Real fashion44k rows, the real ETL and the session's real ArcadeDB server. The old catalog is
rows 0..399 (one of the removed rows carries an attribute no other item has), the new one
rows 40..439 with 15 titles and 15 colours changed and one item's image file replaced by
another picture (an image-only change: same graph content, stale embedding)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from etl.build import import_catalog
from etl.catalog_build import CatalogBuild
from etl.sync import manifest_sha256
from kg.embedded_server import ServerSettings
from kg.graph_db import connect
from kg.graph_load import load_graph

REPO = Path(__file__).resolve().parents[2]


def _import_old(catalogs, out: Path) -> Path:
    import_catalog([catalogs.old], "fashion44k", out, images=str(catalogs.old_images), workers=0)
    return out


def _update(catalogs, build: Path) -> dict:
    import_catalog([catalogs.new], "fashion44k", build, update=True, images=str(catalogs.new_images), workers=0)
    return json.loads((build / "sync.json").read_text())


def _state(db) -> dict:
    """Everything the load writes, by strings (embeddings are `k3m embed`'s)."""
    items = {r["i"]["id"]: {k: v for k, v in r["i"].items() if not k.startswith("embedding")}
             for r in db.run("MATCH (i:Item) RETURN i {.*} AS i")}
    return {
        "items": items,
        "has": {(r["i"], r["p"], r["v"]) for r in db.run(
            "MATCH (i:Item)-[h:HAS]->(v:Value) RETURN i.id AS i, h.property AS p, v.text AS v")},
        "in_category": {(r["i"], r["c"]) for r in db.run(
            "MATCH (i:Item)-[:IN_CATEGORY]->(c:Category) RETURN i.id AS i, c.name AS c")},
        "values": {r["k"] for r in db.run("MATCH (n:Value) RETURN n.text AS k")},
        "properties": {r["k"] for r in db.run("MATCH (n:Property) RETURN n.name AS k")},
        "categories": {r["k"] for r in db.run("MATCH (n:Category) RETURN n.name AS k")},
        "relationships": db.run("MATCH ()-[r]->() RETURN count(r) AS n")[0]["n"],
    }


def _without_splits(state: dict) -> dict:
    """An update keeps each item's split; a fresh import draws it from the (new) title."""
    items = {i: {k: v for k, v in p.items() if k not in ("split", "load_hash")} for i, p in state["items"].items()}
    return {**state, "items": items}


def _marker(db) -> dict:
    return db.run("MATCH (m:PKG {name: 'k3m'}) RETURN m {.*} AS m")[0]["m"]


@pytest.fixture(scope="module")
def catalogs(sync_catalogs) -> SimpleNamespace:
    return sync_catalogs


@pytest.fixture(scope="module")
def expected(catalogs, kg_server, kg_data_dir, tmp_path_factory) -> SimpleNamespace:
    """Fresh full loads into empty databases: of an updated build (what a sync must reach
    exactly) and of the new catalog imported from scratch."""
    work = tmp_path_factory.mktemp("graph-sync-expected")
    updated = _import_old(catalogs, work / "updated")
    _update(catalogs, updated)
    fresh = work / "fresh"
    import_catalog([catalogs.new], "fashion44k", fresh, images=str(catalogs.new_images), workers=0)
    states = {}
    for name, path in (("updated", updated), ("fresh", fresh)):
        with connect(database=f"graph_sync_{name}", server_settings=ServerSettings(data_dir=kg_data_dir)) as db:
            report = load_graph(CatalogBuild.open(path), db)
            assert report.mode == "full" and report.items_removed == 0  # an empty database: no sync
            states[name] = _state(db)
    build = CatalogBuild.open(updated)
    # the update kept vocabulary no item uses any more; a full load leaves it out
    assert len(build.values) > len(states["updated"]["values"]) and catalogs.legacy_value in build.values
    assert catalogs.legacy_property in build.properties
    assert catalogs.legacy_property not in states["updated"]["properties"]
    return SimpleNamespace(**states)


def test_sync_load_equals_a_fresh_load_of_the_updated_build(graph_db, catalogs, expected, tmp_path):
    build_path = _import_old(catalogs, tmp_path / "shop")
    assert load_graph(CatalogBuild.open(build_path), graph_db).mode == "full"
    before = _state(graph_db)
    assert {catalogs.legacy_property, catalogs.legacy_value} <= before["properties"] | before["values"]
    sync = _update(catalogs, build_path)
    assert sync["counts"]["removed"] == 40 and sync["counts"]["added"] == 40 and sync["counts"]["changed"] >= 31

    build = CatalogBuild.open(build_path)
    report = load_graph(build, graph_db)
    assert report.mode == "sync"
    assert (report.items_removed, report.items_invalidated, report.items_created) == (40, sync["counts"]["changed"], 40)
    assert report.orphans_deleted["Property"] == 1 and report.orphans_deleted["Value"] >= 1
    state = _state(graph_db)
    assert state == expected.updated
    assert _without_splits(state) == _without_splits(expected.fresh)
    assert catalogs.new_colour in state["values"] and catalogs.legacy_value not in state["values"]
    marker = _marker(graph_db)
    assert marker["complete"] is True and marker.get("applying") is None
    assert marker["manifest_sha256"] == manifest_sha256(build_path) == sync["manifest_sha256"]

    again = load_graph(build, graph_db)
    assert again.mode == "current" and (again.nodes_created, again.relationships_created, again.items_removed) == (0, 0, 0)
    assert _state(graph_db) == expected.updated


def test_sync_drops_embeddings_and_suggestions_of_changed_items(graph_db, catalogs, tmp_path):
    build_path = _import_old(catalogs, tmp_path / "shop")
    old = CatalogBuild.open(build_path)
    load_graph(old, graph_db)
    sync = _update(catalogs, build_path)
    build = CatalogBuild.open(build_path)
    titles = dict(zip(build.items["item_id"], build.items["title"]))
    retitled = next(i for i in sync["changed"] if titles[i].endswith("(2024 edition)"))
    image_only = catalogs.image_only
    assert image_only in sync["changed"] and sync["changed_fields"]["image"] == 1
    unchanged = next(i for i in titles if i not in sync["changed"] and i not in sync["added"])
    ids = [retitled, image_only, unchanged]
    # what `k3m embed` and `k3m query complete` write, on the old version of the items
    graph_db.write("MATCH (i:Item) WHERE i.id IN $ids SET i.embedding = [0.5, 0.25], i.embedding_model = 'micro', "
                   "i.embedding_created = '2024-01-01T00:00:00Z'", ids=ids)
    kept_value = graph_db.run("MATCH (:Item {id: $id})-[:HAS]->(v:Value) RETURN v.text AS t LIMIT 1", id=unchanged)[0]["t"]
    suggest = ("MATCH (i:Item {id: $id}), (v:Value {text: $text}) "
               "CREATE (i)-[:SUGGESTED_VALUE {property: 'baseColour', score: 0.5, rank: 1, model: 'micro'}]->(v)")
    for item_id in ids:
        graph_db.write(suggest, id=item_id, text=kept_value)
    graph_db.write(suggest, id=unchanged, text=catalogs.legacy_value)  # a value no item will have: it goes

    hashes = {r["id"]: r["h"] for r in graph_db.run("MATCH (i:Item) RETURN i.id AS id, i.load_hash AS h")}
    report = load_graph(build, graph_db)
    assert report.mode == "sync" and report.items_invalidated == len(sync["changed"])
    rows = {r["id"]: r for r in graph_db.run(
        "MATCH (i:Item) WHERE i.id IN $ids RETURN i.id AS id, i.embedding AS e, i.embedding_model AS m, "
        "i.embedding_created AS c, i.load_hash AS h", ids=ids)}
    for item_id in (retitled, image_only):
        assert (rows[item_id]["e"], rows[item_id]["m"], rows[item_id]["c"]) == (None, None, None)
    assert rows[unchanged]["e"] == [0.5, 0.25] and rows[unchanged]["m"] == "micro"
    assert rows[image_only]["h"] == hashes[image_only]  # its graph content is the same: only sync.json knew
    suggestions = graph_db.run("MATCH (i:Item)-[s:SUGGESTED_VALUE]->(v:Value) RETURN i.id AS i, v.text AS v")
    assert suggestions == [{"i": unchanged, "v": kept_value}]


CHILD = """
import sys, time
from pathlib import Path
from etl.catalog_build import CatalogBuild
from kg.embedded_server import ServerSettings
from kg.graph_db import connect
from kg.graph_load import GraphLoadSettings, load_graph

build, data_dir, database, flag = sys.argv[1:]

def slowly(done, total):  # time for the test to kill this load between two batches
    Path(flag).write_text(str(done))
    time.sleep(0.5)

with connect(database=database, server_settings=ServerSettings(data_dir=Path(data_dir))) as db:
    load_graph(CatalogBuild.open(build), db, GraphLoadSettings(items_per_batch=5), progress=slowly)
"""


def test_a_sync_killed_midway_completes_on_the_next_load(graph_db, kg_data_dir, catalogs, expected, tmp_path):
    build_path = _import_old(catalogs, tmp_path / "shop")
    load_graph(CatalogBuild.open(build_path), graph_db)
    sync = _update(catalogs, build_path)
    flag = tmp_path / "progress"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(build_path), str(kg_data_dir), graph_db.database, str(flag)],
                             cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while not (flag.is_file() and flag.read_text() and int(flag.read_text()) >= 10):
            assert child.poll() is None, child.stderr.read()
            assert time.monotonic() < deadline, "the load never got going"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.communicate()
    assert child.returncode == -signal.SIGKILL
    marker = _marker(graph_db)  # removals and invalidations done, items half written
    assert marker["complete"] is False and marker["applying"] == sync["manifest_sha256"]
    assert marker["manifest_sha256"] == sync["previous_manifest_sha256"]
    assert marker["pending"] == sorted(sync["changed"])  # what it invalidates, kept for a rerun
    assert _state(graph_db) != expected.updated

    # `k3m sync` run again: the same catalog gives an empty diff, the marker still knows the rest
    again = _update(catalogs, build_path)
    assert again["counts"]["changed"] == again["counts"]["added"] == again["counts"]["removed"] == 0
    report = load_graph(CatalogBuild.open(build_path), graph_db)
    assert report.mode == "sync" and report.items_removed == 0  # the killed load had removed them
    assert 0 < report.items_created + report.items_updated < 70
    assert _state(graph_db) == expected.updated
    assert _marker(graph_db)["complete"] is True and _marker(graph_db).get("applying") is None


def test_two_updates_before_a_load_end_equal_too(graph_db, catalogs, expected, tmp_path):
    """The database two versions behind (the build was updated twice, the second time with
    nothing new): items the build lost are found from the graph itself, not from sync.json."""
    build_path = _import_old(catalogs, tmp_path / "shop")
    load_graph(CatalogBuild.open(build_path), graph_db)
    _update(catalogs, build_path)
    assert _update(catalogs, build_path)["counts"]["removed"] == 0
    report = load_graph(CatalogBuild.open(build_path), graph_db)
    assert report.mode == "sync" and report.items_removed == 40 and report.items_created == 40
    assert _state(graph_db) == expected.updated


def test_a_database_holding_another_version_gets_a_plain_load(graph_db, catalogs, expected, tmp_path):
    """sync.json applies only to the version it was made from: here the database holds the
    fresh import of the new catalog, so the load compares by hash and deletes nothing."""
    fresh = tmp_path / "fresh"
    import_catalog([catalogs.new], "fashion44k", fresh, images=str(catalogs.new_images), workers=0)
    load_graph(CatalogBuild.open(fresh), graph_db)
    graph_db.write("CREATE (:Item {id: 'not-in-any-build'})")
    build_path = _import_old(catalogs, tmp_path / "shop")
    _update(catalogs, build_path)
    report = load_graph(CatalogBuild.open(build_path), graph_db)
    assert report.mode == "full" and report.items_removed == 0 and report.orphans_deleted == {}
    assert graph_db.run("MATCH (i:Item {id: 'not-in-any-build'}) RETURN count(i) AS n")[0]["n"] == 1
