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


def _old_build(update_catalogs, path):
    root = update_catalogs[0]
    import_catalog([root / "old.jsonl"], "fashion44k", path, images=str(root / "old.zip"), workers=0)
    return root


def _sync_args(source, build_path, root, *extra):
    return ["sync", str(source), "--mapping", "fashion44k", "--build", str(build_path), "--images", str(root / "new.zip"),
            "--workers", "0", "--no-embed", *extra]


def test_a_sync_whose_rejected_rows_would_remove_items_is_refused_then_applied_loudly(update_catalogs, tmp_path,
                                                                                      monkeypatch, capsys):
    """Rows of the new version whose title holds a byte that is not UTF-8 are rejected; the
    items they carry must not vanish from the build without a word (they used to: `0 added,
    ... N removed`, exit 0, nothing about the rejects)."""
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "data"))
    build_path = tmp_path / "shop"
    root = _old_build(update_catalogs, build_path)
    lines = (root / "new.jsonl").read_bytes().splitlines()
    kept = [json.loads(line)["id"] for line in lines[:60]]
    corrupt = list(range(50, 57))  # rows of items the old version has too (new = old rows 40..)
    for k in corrupt:
        lines[k] = lines[k].replace(b'"productDisplayName": "', b'"productDisplayName": "\xff', 1)
    source = tmp_path / "new-corrupt.jsonl"
    source.write_bytes(b"\n".join(lines) + b"\n")
    before = (build_path / "manifest.json").read_bytes()

    assert main(_sync_args(source, build_path, root)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "refused (the build is unchanged)" in err
    assert (f"7 item(s) of the previous version would be removed because their rows in the new version were rejected "
            f"(invalid_utf8=7; the first: {source}:51, id '{kept[50]}', invalid_utf8") in err
    assert "--allow-removals" in err and (build_path / "manifest.json").read_bytes() == before

    assert main(_sync_args(source, build_path, root, "--allow-removals")) == 0
    captured = capsys.readouterr()
    assert "47 removed" in captured.out and f"7 rows rejected (invalid_utf8=7), see {build_path}/rejects.jsonl" in captured.out
    assert "k3m sync: warning: 7 item(s) of the previous version would be removed" in captured.err
    assert "applied (--allow-removals)" in captured.err
    sync = read_sync(build_path)
    assert sorted(sync["removed_by_rejects"]) == sorted(str(kept[k]) for k in corrupt)
    assert set(sync["removed_by_rejects"]) <= set(sync["removed"])


def test_sync_json_carries_rejects_and_duplicates_are_loud(update_catalogs, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "data"))
    build_path = tmp_path / "shop"
    root = _old_build(update_catalogs, build_path)
    lines = (root / "new.jsonl").read_bytes().splitlines()
    twice = [json.loads(line) for line in lines[100:103]]
    for record in twice:  # the same ids again, with other titles
        record["productDisplayName"] = "Duplicate row of another export"
    source = tmp_path / "new-duplicates.jsonl"
    source.write_bytes(b"\n".join(lines + [json.dumps(r).encode() for r in twice]) + b"\n")
    assert main(_sync_args(source, build_path, root, "--json")) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    update = report["import"]["update"]
    assert update["rejected_rows"] == 3 and update["rejected"] == {"duplicate_id": 3}
    assert update["removed_by_rejects"] == {} and update["removed"] == 40
    assert "k3m sync: warning: 3 row(s) repeat an id read before (duplicate_id)" in captured.err
    assert update["warnings"] and "duplicate_id" in update["warnings"][0]


def test_an_update_removing_more_than_a_tenth_of_the_items_is_refused(update_catalogs, tmp_path, capsys):
    """A truncated export: the new version holds only its first 400 rows (200 of the 600 items go)."""
    build_path = tmp_path / "shop"
    root = _old_build(update_catalogs, build_path)
    source = tmp_path / "truncated.jsonl"
    source.write_bytes(b"\n".join((root / "new.jsonl").read_bytes().splitlines()[:400]) + b"\n")
    update = ["import", str(source), "--mapping", "fashion44k", "--update", str(build_path), "--images",
              str(root / "new.zip"), "--workers", "0"]
    assert main(update) == 2
    err = capsys.readouterr().err
    assert "the new version removes 200 of the 600 items (33%; more than 10% in one update" in err and err.count("\n") == 1
    assert read_sync(build_path) is None  # still the plain import
    assert main(update + ["--allow-removals"]) == 0
    assert read_sync(build_path)["counts"]["removed"] == 200
    assert "applied (--allow-removals)" in capsys.readouterr().err


def test_an_update_with_another_mapping_is_refused_without_mapping_changed(update_catalogs, tmp_path, capsys):
    """The build records its mapping's digest; an update through another mapping would report
    every item as changed by the catalog."""
    import yaml

    from etl.mapping import BUILTIN_DIR

    build_path = tmp_path / "shop"
    root = _old_build(update_catalogs, build_path)
    assert len(CatalogBuild.open(build_path).manifest["mapping_digest"]) == 64
    mapping = yaml.safe_load((BUILTIN_DIR / "fashion44k.yaml").read_text())
    copy = tmp_path / "same.yaml"
    copy.write_text(yaml.safe_dump({**mapping, "name": "renamed"}))  # the same mapping elsewhere: no change
    mapping["exclude"] = [*mapping["exclude"], "season"]
    mapping["properties"] = [p for p in mapping["properties"] if p != "season"]
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump(mapping))
    update = ["import", str(root / "new.jsonl"), "--update", str(build_path), "--images", str(root / "new.zip"),
              "--workers", "0"]
    assert main(update + ["--mapping", str(other)]) == 2
    err = capsys.readouterr().err
    assert f"the mapping {other} differs from the one the build was imported with" in err and "exclude, properties" in err
    assert "--mapping-changed" in err and read_sync(build_path) is None
    assert main(update + ["--mapping", str(copy)]) == 0
    assert "differs" not in capsys.readouterr().err
    assert main(update + ["--mapping", str(other), "--mapping-changed", "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["update"]["mapping_changed"] == ["exclude", "properties"]
    assert "warning: the mapping differs from the build's in exclude, properties: applied (--mapping-changed)" in captured.err


def test_a_second_sync_of_one_build_waits_for_the_first(update_catalogs, tmp_path):
    """Two syncs of one build used to race, and the loser printed Oxigraph's raw LOCK error."""
    import subprocess
    import sys

    build_path = tmp_path / "shop"
    root = _old_build(update_catalogs, build_path)
    script = ("import sys\nfrom etl.atomic import directory_lock\n"
              f"with directory_lock({str(build_path)!r}, 'import or sync'):\n    print('held', flush=True)\n"
              "    sys.stdin.read()\n")
    first = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert first.stdout.readline() == "held\n"
    second = subprocess.Popen([sys.executable, "-m", "k3m", *_sync_args(root / "new.jsonl", build_path, root, "--no-rdf",
                                                                          "--data-dir", str(tmp_path / "data"))],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        waiting = second.stderr.readline()
        assert waiting == f"[k3m] another import or sync of {build_path} is running; waiting for it to finish\n"
        assert second.poll() is None and read_sync(build_path) is None
    finally:
        first.stdin.close()
        first.wait(30)
    out, err = second.communicate(timeout=300)
    assert second.returncode == 0 and "40 removed" in out and "LOCK" not in err and "Traceback" not in err
