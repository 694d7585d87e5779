"""Incremental sync of the RDF store: a build updated in place (`k3m import --update`) is
loaded by applying its sync.json to the store in place, which then holds exactly the triples
of a fresh load of that build; a load killed midway completes on the next one.

Real fashion44k rows and the real ETL: the old catalog is rows 0..399 (one of the removed rows
carries an attribute no other item has), the new one rows 40..439 with 15 titles and 15
colours changed."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pyoxigraph as ox
import pytest

from etl.build import import_catalog
from etl.catalog_build import CatalogBuild
from etl.sync import manifest_sha256
from kg.rdf_iris import Namespaces
from kg.rdf_store import RdfSettings, load_rdf, read_meta

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def catalogs(sync_catalogs) -> SimpleNamespace:
    return sync_catalogs


def _import(catalogs, source: Path, out: Path, update: bool = False) -> Path:
    images = catalogs.new_images if source == catalogs.new else catalogs.old_images
    import_catalog([source], "fashion44k", out, update=update, images=str(images), workers=0)
    return out


def _old_then_updated(catalogs, build: Path, store: Path) -> dict:
    """Import the old catalog into ``build``, load it into ``store``, update the build."""
    _import(catalogs, catalogs.old, build)
    assert load_rdf(CatalogBuild.open(build), store).mode == "full"
    _import(catalogs, catalogs.new, build, update=True)
    return json.loads((build / "sync.json").read_text())


def _triples(store: Path) -> set[str]:
    """The store's triples as N-Triples lines (every IRI is built from strings, so stores of
    different builds compare directly)."""
    read = ox.Store.read_only(str(store / "store"))
    try:
        return {str(quad.triple) for quad in read}
    finally:
        del read


def _without_splits(triples: set[str]) -> set[str]:
    """An update keeps each item's split; a fresh import draws it from the (new) title."""
    split = f"<{Namespaces().term('split')}>"
    return {t for t in triples if f" {split} " not in t}


@pytest.fixture(scope="module")
def expected(catalogs, tmp_path_factory) -> SimpleNamespace:
    """Full loads into fresh stores: of an updated build (what a sync must reach exactly) and
    of the new catalog imported from scratch."""
    work = tmp_path_factory.mktemp("rdf-sync-expected")
    updated = _import(catalogs, catalogs.old, work / "updated")
    _import(catalogs, catalogs.new, updated, update=True)
    fresh = _import(catalogs, catalogs.new, work / "fresh")
    for path in (updated, fresh):
        assert load_rdf(CatalogBuild.open(path), work / f"{path.name}-store").mode == "full"
    triples = _triples(work / "updated-store")
    # the update kept vocabulary no item uses any more; a full load leaves it out
    build, ns = CatalogBuild.open(updated), Namespaces()
    assert catalogs.legacy_value in build.values and catalogs.legacy_property in build.properties
    legacy = (f"<{ns.value(catalogs.legacy_value)}>", f"<{ns.property(catalogs.legacy_property)}>")
    assert not any(iri in t for iri in legacy for t in triples)
    assert read_meta(work / "updated-store")["triples"] == len(triples)
    return SimpleNamespace(updated=triples, fresh=_triples(work / "fresh-store"))


def test_sync_load_equals_a_full_load_of_the_updated_build(catalogs, expected, tmp_path):
    build_path, store = tmp_path / "shop", tmp_path / "store"
    sync = _old_then_updated(catalogs, build_path, store)
    assert f"<{Namespaces().value(catalogs.legacy_value)}>" in "".join(_triples(store))
    build = CatalogBuild.open(build_path)

    report = load_rdf(build, store)
    assert report.mode == "sync"
    assert (report.items_removed, report.items_rewritten) == (40, sync["counts"]["changed"] + 40)
    assert report.vocabulary_removed >= 2 and report.vocabulary_added >= 1  # the legacy pair; the new colour
    triples = _triples(store)
    assert triples == expected.updated
    assert _without_splits(triples) == _without_splits(expected.fresh)
    meta = read_meta(store)
    assert "applying" not in meta and meta["manifest_sha256"] == manifest_sha256(build_path) == sync["manifest_sha256"]
    assert meta["triples"] == report.triples == len(triples) and meta["pkg_triples"] == len(build.triples)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # nothing left aside

    again = load_rdf(build, store)
    assert again.mode == "current" and again.triples == len(triples)
    assert _triples(store) == expected.updated


CHILD = """
import sys, time
from etl.catalog_build import CatalogBuild
from kg.rdf_store import RdfSettings, load_rdf

build, store, flag = sys.argv[1:]

def slowly(done, total):  # time for the test to kill this load between two chunks
    with open(flag, "w") as f:
        f.write(str(done))
    time.sleep(0.5)

load_rdf(CatalogBuild.open(build), store, RdfSettings(chunk_items=5), progress=slowly)
"""


def test_a_sync_killed_midway_completes_on_the_next_load(catalogs, expected, tmp_path):
    build_path, store = tmp_path / "shop", tmp_path / "store"
    sync = _old_then_updated(catalogs, build_path, store)
    flag = tmp_path / "progress"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(build_path), str(store), str(flag)],
                             cwd=REPO, env=dict(os.environ), stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (flag.is_file() and flag.read_text() and int(flag.read_text()) >= 10):
            assert child.poll() is None, child.stderr.read()
            assert time.monotonic() < deadline, "the load never got going"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)  # old triples deleted, some items written again
    finally:
        child.kill()
        child.communicate()
    assert child.returncode == -signal.SIGKILL
    meta = read_meta(store)
    assert meta["applying"] == sync["manifest_sha256"] and meta["manifest_sha256"] == sync["previous_manifest_sha256"]
    assert set(meta["pending"]) == {*sync["removed"], *sync["changed"], *sync["added"]}
    assert _triples(store) != expected.updated

    # `k3m sync` run again: the same catalog gives an empty diff, meta.json still has the rest
    _import(catalogs, catalogs.new, build_path, update=True)
    assert json.loads((build_path / "sync.json").read_text())["counts"]["changed"] == 0
    report = load_rdf(CatalogBuild.open(build_path), store)  # RocksDB's lock died with the child
    assert report.mode == "sync"
    assert _triples(store) == expected.updated
    assert "applying" not in read_meta(store) and "pending" not in read_meta(store)


def test_a_store_of_another_version_is_rewritten(catalogs, expected, tmp_path):
    """sync.json applies only to the version it was made from: a store holding the fresh
    import of the new catalog (or loaded with another base IRI) gets the full rewrite."""
    fresh, store = _import(catalogs, catalogs.new, tmp_path / "fresh"), tmp_path / "store"
    load_rdf(CatalogBuild.open(fresh), store)
    build_path = _import(catalogs, catalogs.old, tmp_path / "shop")
    _import(catalogs, catalogs.new, build_path, update=True)
    assert load_rdf(CatalogBuild.open(build_path), store).mode == "full"
    assert _triples(store) == expected.updated

    other, base = tmp_path / "other", "https://shop.example/kg/"
    _old_then_updated(catalogs, tmp_path / "shop2", other)
    report = load_rdf(CatalogBuild.open(tmp_path / "shop2"), other, RdfSettings(base_iri=base))
    assert report.mode == "full" and read_meta(other)["base_iri"] == base
