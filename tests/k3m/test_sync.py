"""`k3m sync`: one command updates the build, its RDF store, its graph database and its
embeddings to the catalog's new version, each applying only the change.

Real data (fixture ``update_catalogs``: fashion44k rows 0-599, then 40-639 with titles,
colours and images changed), the real embedded graph server, the micro checkpoint."""
from __future__ import annotations

import itertools
import os
import json

import numpy as np

from etl.build import import_catalog
from etl.catalog_build import CatalogBuild
from etl.sync import read_sync
from k3m.cli import main
from k3m.embedding.embed import embed_build
from k3m.embedding.store import EmbeddingStore
from k3m.embedding.writeback import write_back
from kg.embedded_server import ServerSettings
from kg.graph_db import connect
from kg.graph_load import load_graph
from kg.paths import DATA_DIR_ENV
from kg.rdf_store import load_rdf, open_rdf, sparql, store_dir

_databases = itertools.count()


def test_sync_brings_build_rdf_graph_and_embeddings_to_the_new_version(update_catalogs, micro_checkpoint, kg_server,
                                                                      kg_data_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(DATA_DIR_ENV, str(kg_data_dir))
    root = update_catalogs[0]
    build_path = tmp_path / "shop"
    import_catalog([root / "old.jsonl"], "fashion44k", build_path, images=str(root / "old.zip"), workers=0)
    database = f"sync{next(_databases)}"
    settings = ServerSettings(data_dir=kg_data_dir)
    with connect(database=database, server_settings=settings, create=True) as db:
        load_rdf(CatalogBuild.open(build_path))
        load_graph(CatalogBuild.open(build_path), db)
        write_back(db, embed_build(micro_checkpoint, build_path)[0])

    args = ["sync", str(root / "new.jsonl"), "--mapping", "fashion44k", "--build", str(build_path),
            "--images", str(root / "new.zip"), "--workers", "0", "--data-dir", str(kg_data_dir), "--json"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    sync = read_sync(build_path)
    assert report["import"]["update"]["removed"] == len(sync["removed"]) == 40
    assert report["rdf"]["mode"] == "sync" and report["skipped"] == []
    [embedded] = report["embed"]
    assert 0 < embedded["computed"] <= len(sync["added"]) + len(sync["changed"])
    assert embedded["graph"]["written"] == embedded["computed"]

    build = CatalogBuild.open(build_path)
    store = EmbeddingStore.open(build_path)  # current again, so served
    assert list(store.ids) == build.items["item_id"].tolist()
    with connect(database=database, server_settings=settings) as db:
        rows = db.run("MATCH (i:Item) RETURN collect([i.id, i.embedding]) AS r")[0]["r"]
    assert sorted(i for i, _ in rows) == sorted(store.ids)  # removed items gone, added ones there
    assert all(np.array_equal(np.asarray(v, np.float32), store.matrix[store.row_of[i]]) for i, v in rows)
    graph = open_rdf(store_dir(build))
    items = {str(r[0]) for r in sparql(graph, "SELECT ?id WHERE { ?i k3m:itemId ?id }")}
    assert items == set(store.ids)

    assert main(args[:-1]) == 0  # again: nothing left to do
    out = capsys.readouterr().out
    assert "0 added, 0 changed, 0 removed" in out and "0 computed" in out


def test_a_build_named_through_a_symbolic_link_is_written_and_synced_at_its_target(update_catalogs, kg_server,
                                                                                   kg_data_dir, tmp_path, monkeypatch,
                                                                                   capsys):
    """`ln -s builds/B L`: import, load and sync through L all reach builds/B; the graph and the
    RDF store follow the sync (they used to keep the removed items: the update replaced L by a
    real directory and left builds/B, and `.L.old-PID`, behind)."""
    monkeypatch.setenv(DATA_DIR_ENV, str(kg_data_dir))
    root = update_catalogs[0]
    target = tmp_path / "builds" / "B"
    target.mkdir(parents=True)
    link = tmp_path / "L"
    link.symlink_to(target)
    images = ["--images", str(root / "old.zip"), "--workers", "0"]
    assert main(["import", str(root / "old.jsonl"), "--mapping", "fashion44k", "--out", str(link), *images]) == 0
    assert main(["import", str(root / "old.jsonl"), "--mapping", "fashion44k", "--out", str(link), *images]) == 0
    assert link.is_symlink() and (target / "manifest.json").is_file()
    database = f"sync{next(_databases)}"
    assert main(["kg", "load", str(link), "--database", database, "--data-dir", str(kg_data_dir)]) == 0
    capsys.readouterr()

    assert main(["sync", str(root / "new.jsonl"), "--mapping", "fashion44k", "--build", str(link), "--images",
                 str(root / "new.zip"), "--workers", "0", "--data-dir", str(kg_data_dir), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["rdf"]["mode"] == "sync" and report["graph"]["mode"] == "sync" and report["skipped"] == []
    assert report["graph"]["items_removed"] == report["import"]["update"]["removed"] == 40
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["L", "builds"]  # no .L.old-PID, no real directory L
    assert sorted(p.name for p in target.parent.iterdir()) == ["B"]
    build = CatalogBuild.open(link)
    assert read_sync(target)["manifest_sha256"] == read_sync(link)["manifest_sha256"]
    with connect(database=database, server_settings=ServerSettings(data_dir=kg_data_dir)) as db:
        in_graph = db.run("MATCH (i:Item) RETURN collect(i.id) AS ids")[0]["ids"]
        has = db.run("MATCH (:Item)-[h:HAS]->() RETURN count(h) AS n")[0]["n"]
    assert sorted(in_graph) == sorted(build.items["item_id"]) and has == len(build.triples)
    rdf = open_rdf(store_dir(build))
    assert {str(r[0]) for r in sparql(rdf, "SELECT ?id WHERE { ?i k3m:itemId ?id }")} == set(build.items["item_id"])
