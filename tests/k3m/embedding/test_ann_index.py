"""The FAISS index beside an embedding store: recall against exact search on real embeddings,
search under a candidate set (a graph constraint), persistence, and `k3m sync` keeping it
current without a rebuild (HNSW tombstones, IVF removals) or with one past the threshold.

Real data: the micro checkpoint's embeddings of the 600-item fashion44k slice, and the
``update_catalogs`` fixture (rows 0-599, then 40-639 with titles, colours and images
edited) for the sync."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from k3m.embedding.ann_index import (AnnIndex, AnnSettings, build_index, ensure_index, save_index, store_version,
                                     unit_rows)
from k3m.embedding.store import EmbeddingStore
from k3m.query.vector_search import ExactIndex

KINDS = {"hnsw": AnnSettings(kind="hnsw", hnsw_m=8, hnsw_ef_search=16),
         # 600 rows: 15 lists; 6 probed, so most of the catalog is never looked at
         "ivf": AnnSettings(kind="ivf", ivf_nprobe=6)}


def recall_at(store, ann, k=10, rows_of=None) -> float:
    """Mean share of the exact top-k (every row as query, itself excluded) that ``ann`` finds."""
    exact = ExactIndex(store)
    found = []
    for row in range(len(store.ids)):
        rows = None if rows_of is None else rows_of(row)
        truth = set(exact.search(exact.matrix[row], k, rows, exclude=row)[0].tolist())
        got = ann.search(exact.matrix[row], k, rows, exclude=row)[0]
        assert row not in got.tolist() and len(set(got.tolist())) == len(got)
        if rows is not None:
            assert set(got.tolist()) <= set(rows.tolist())
        found.append(len(truth & set(got.tolist())) / max(1, len(truth)))
    return float(np.mean(found))


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_the_index_finds_the_exact_neighbours(query_store, kind):
    ann = build_index(query_store.matrix, store_version(query_store.meta), KINDS[kind])
    assert ann.kind == kind and ann.live == len(query_store.ids) == ann.index.ntotal
    assert recall_at(query_store, ann) >= 0.95
    # the scores are the cosines, as exact search gives them
    exact = ExactIndex(query_store)
    rows, scores = ann.search(exact.matrix[7], 10, exclude=7)
    np.testing.assert_allclose(scores, unit_rows(exact.matrix[rows]) @ unit_rows(exact.matrix[[7]])[0], atol=1e-5)
    assert np.all(np.diff(scores) <= 1e-7)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_constrained_search_returns_only_candidates(query_store, slice_build, kind):
    ann = build_index(query_store.matrix, store_version(query_store.meta), KINDS[kind])
    categories = slice_build.items["category"].to_numpy(dtype=object)
    same_category = {c: np.flatnonzero(categories == c) for c in set(categories.tolist())}
    assert recall_at(query_store, ann, rows_of=lambda row: same_category[categories[row]]) >= 0.95
    # a selective constraint: the widened search still finds every candidate there is
    few = np.array([3, 200, 401, 599])
    rows, _ = ann.search(query_store.matrix[0], 10, few, exclude=3)
    assert sorted(rows.tolist()) == [200, 401, 599]


def test_the_index_is_persisted_and_refused_for_another_version_of_the_store(query_store, tmp_path):
    copy = EmbeddingStore(tmp_path / query_store.path.name)
    shutil.copytree(query_store.path, copy.path)
    made = ensure_index(copy, AnnSettings(kind="hnsw"))
    read = AnnIndex.open(copy)
    assert read is not None and read.kind == "hnsw" and read.meta["faiss"]
    query = np.asarray(copy.matrix[11])
    assert np.array_equal(read.search(query, 10, exclude=11)[0], made.search(query, 10, exclude=11)[0])
    assert copy.ann_index() is not None and ensure_index(copy) is not None  # auto keeps the kind it has
    meta = json.loads((copy.path / "meta.json").read_text())
    (copy.path / "meta.json").write_text(json.dumps({**meta, "created": "2000-01-01T00:00:00+00:00"}))
    assert AnnIndex.open(EmbeddingStore(copy.path)) is None  # the store changed without its index
    assert ensure_index(EmbeddingStore(copy.path), AnnSettings(kind="exact")) is None
    assert not (copy.path / "ann").exists()


def test_small_catalogs_get_no_index_by_default(query_store):
    assert AnnSettings().kind_for(len(query_store.ids)) == "exact"
    assert query_store.ann_index() is None
    assert AnnSettings().kind_for(100_000) == "hnsw" and AnnSettings().kind_for(1_000_000) == "ivf"


# -- k3m sync ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def embedded_old(update_catalogs, micro_checkpoint, tmp_path_factory):
    """The old catalog imported and embedded once (copied per test)."""
    from etl.build import import_catalog
    from k3m.embedding.embed import embed_build

    root = update_catalogs[0]
    build = tmp_path_factory.mktemp("ann-sync") / "old"
    import_catalog([root / "old.jsonl"], "fashion44k", build, images=str(root / "old.zip"), workers=0)
    embed_build(micro_checkpoint, build)
    return build


def synced(embedded_old, update_catalogs, tmp_path, settings: AnnSettings):
    """(store and index before, store and index after `k3m sync` of the new catalog version)."""
    from k3m.sync import sync_catalog

    build = tmp_path / "build"
    shutil.copytree(embedded_old, build, symlinks=True)
    before = EmbeddingStore.open(build)
    ensure_index(before, settings)
    before_copy = tmp_path / "before"
    shutil.copytree(before.path, before_copy)
    root = update_catalogs[0]
    report = sync_catalog([root / "new.jsonl"], "fashion44k", build, images=str(root / "new.zip"), workers=0,
                          rdf=False, graph=False)
    after = EmbeddingStore.open(build)
    return EmbeddingStore(before_copy), AnnIndex.open(EmbeddingStore(before_copy)), after, after.ann_index(), report


def vectors_of(ann: AnnIndex, labels: np.ndarray) -> np.ndarray:
    import faiss

    if ann.kind == "ivf":
        ann.index.set_direct_map_type(faiss.DirectMap.Hashtable)
    return np.stack([ann.index.reconstruct(int(label)) for label in labels])


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_sync_updates_the_index_without_a_rebuild(embedded_old, update_catalogs, tmp_path, kind):
    before, old_ann, after, ann, report = synced(embedded_old, update_catalogs, tmp_path, KINDS[kind])
    assert report["embed"] and ann is not None and ann.kind == kind
    computed = {i for i, c in zip(after.ids, after.created) if c not in set(before.created)}
    removed = set(before.ids) - set(after.ids)
    recomputed_old = computed & set(before.ids)
    update = ann.meta["last_update"]
    assert update["mode"] == "incremental" and report["embed"][0]["index"]["last_update"] == update
    assert update["added"] == len(computed) and update["removed"] == len(removed) + len(recomputed_old)
    assert 0 < len(removed) and 0 < len(computed) < 200
    # every row of the new store is one live label, whose vector is that row's
    live = np.flatnonzero(ann.label_row >= 0)
    assert sorted(ann.label_row[live].tolist()) == list(range(len(after.ids)))
    np.testing.assert_allclose(vectors_of(ann, live), unit_rows(after.matrix[ann.label_row[live]]), atol=1e-6)
    # kept items kept their labels: nothing was re-added
    kept = [i for i in after.ids if i not in computed]
    old_label = {before.ids[r]: label for label, r in enumerate(old_ann.label_row.tolist()) if r >= 0}
    new_label = {after.ids[r]: label for label, r in enumerate(ann.label_row.tolist()) if r >= 0}
    assert all(old_label[i] == new_label[i] for i in kept)
    if kind == "hnsw":  # removed and recomputed items are tombstones, searches never return them
        assert ann.dead == update["removed"] and ann.index.ntotal == len(ann.label_row)
    else:  # IVF removes them
        assert ann.dead == 0 and ann.index.ntotal == len(after.ids)
    assert recall_at(after, ann) >= 0.95


def test_hnsw_is_rebuilt_past_its_tombstone_threshold(embedded_old, update_catalogs, tmp_path):
    settings = AnnSettings(kind="hnsw", hnsw_m=8, rebuild_dead_fraction=0.05)
    _, _, after, ann, _ = synced(embedded_old, update_catalogs, tmp_path, settings)
    assert ann.meta["last_update"]["mode"] == "rebuilt"
    assert ann.dead == 0 and np.array_equal(ann.label_row, np.arange(len(after.ids)))
    assert recall_at(after, ann) >= 0.95


def test_a_saved_index_of_another_store_version_is_not_updated_but_rebuilt(query_store, tmp_path):
    copy = EmbeddingStore(tmp_path / query_store.path.name)
    shutil.copytree(query_store.path, copy.path)
    ann = build_index(copy.matrix, {**store_version(copy.meta), "created": "elsewhere"}, AnnSettings(kind="hnsw"))
    save_index(ann, copy.path)
    assert copy.ann_index() is None
    assert ensure_index(copy, AnnSettings(kind="auto")) is None  # stale and small: exact, index removed


def test_k3m_embed_builds_keeps_and_removes_the_index(micro_checkpoint, slice_view, capsys):
    from k3m.cli import main

    build = slice_view("ann-cli")
    args = ["embed", "--checkpoint", str(micro_checkpoint), str(build), "--no-graph", "--json"]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["index"] == {"kind": "exact"}  # 600 items: exact search
    assert main([*args, "--index", "hnsw"]) == 0
    made = json.loads(capsys.readouterr().out)["index"]
    assert made["kind"] == "hnsw" and made["live"] == 600 and made["last_update"]["mode"] == "built"
    assert main(args) == 0 and json.loads(capsys.readouterr().out)["index"] == made  # auto keeps what is there
    assert main([*args, "--index", "exact"]) == 0
    assert json.loads(capsys.readouterr().out)["index"] == {"kind": "exact"}
    assert EmbeddingStore.open(build).ann_index() is None


def test_embed_writes_the_index_it_is_asked_for_once(micro_checkpoint, fashion_slice_build, tmp_path):
    """``EmbedSettings.index`` reaches the store's atomic write: the kind asked for is built
    there (and ``ensure_index`` then keeps it), and ``exact`` builds none even past the size
    where ``auto`` would (the embed of a large catalog never builds an index only to drop it)."""
    from k3m.embedding.embed import EmbedSettings, embed_build

    build = tmp_path / "build"
    shutil.copytree(fashion_slice_build, build, symlinks=True)
    shutil.rmtree(build / "embeddings", ignore_errors=True)
    store, _ = embed_build(micro_checkpoint, build, EmbedSettings(model_id="with-hnsw", index=KINDS["hnsw"]))
    ann = store.ann_index()
    assert ann is not None and ann.kind == "hnsw" and ann.live == len(store.ids)
    built_at = ann.describe()["last_update"]["at"]
    assert ensure_index(store, KINDS["hnsw"]).describe()["last_update"]["at"] == built_at  # kept, not rebuilt

    small = AnnSettings(kind="exact", exact_below=1)  # auto would index 600 rows under this bound
    assert small.kind_for(len(store.ids)) == "exact" and AnnSettings(exact_below=1).kind_for(len(store.ids)) == "hnsw"
    store, _ = embed_build(micro_checkpoint, build, EmbedSettings(model_id="no-index", index=small))
    assert store.ann_index() is None and not (store.path / "ann").exists()
    store, _ = embed_build(micro_checkpoint, build, EmbedSettings(model_id="auto-index", index=AnnSettings(exact_below=1)))
    assert store.ann_index() is not None and store.ann_index().kind == "hnsw"


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_selective_constraint_is_ranked_on_the_candidates_codes(query_store, slice_build, kind):
    """Under ``scan_share`` the candidates' codes are scanned: exact on flat codes, whatever
    the graph or the probed lists would have found (here crippled: efSearch 1, nprobe 1,
    no widening)."""
    from dataclasses import replace

    crippled = replace(KINDS[kind], hnsw_ef_search=1, ivf_nprobe=1, widen_limit=1)
    scan = build_index(query_store.matrix, store_version(query_store.meta), replace(crippled, scan_share=1.0))
    walk = build_index(query_store.matrix, store_version(query_store.meta), replace(crippled, scan_share=0.0))
    exact = ExactIndex(query_store)
    categories = slice_build.items["category"].to_numpy(dtype=object)
    same_category = {c: np.flatnonzero(categories == c) for c in set(categories.tolist())}
    walked = []
    for row in range(0, len(query_store.ids), 23):
        rows = same_category[categories[row]]
        truth_rows, truth_scores = exact.search(exact.matrix[row], 10, rows, exclude=row)
        got_rows, got_scores = scan.search(exact.matrix[row], 10, rows, exclude=row)
        assert set(got_rows.tolist()) <= set(rows.tolist()) - {row}
        np.testing.assert_allclose(got_scores, truth_scores, atol=1e-5)
        walked.append(len(set(walk.search(exact.matrix[row], 10, rows, exclude=row)[0].tolist()) & set(truth_rows.tolist()))
                      / max(1, len(truth_rows)))
    assert np.mean(walked) < 0.95  # the crippled walk alone would not have found them
