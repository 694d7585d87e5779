"""`k3m embed` after `k3m import --update`: only items whose input changed run through the model,
the others keep bit-identical vectors (and their version, so the write-back skips them), and
the store equals a fresh embed of the updated build for every item.

Real data: fixture ``update_catalogs`` (fashion44k rows 0-599, then 40-639 with titles,
colours and images changed); the micro checkpoint pretrained on the 600-row slice."""
from __future__ import annotations

import itertools
import shutil

import numpy as np
import pytest

from etl.build import import_catalog
from etl.catalog_build import CatalogBuild
from etl.sync import read_sync
from k3m.embedding.embed import EmbedSettings, embed_build
from k3m.embedding.store import EmbeddingStore, EmbeddingStoreError
from k3m.embedding.writeback import write_back


def _import(catalogs, which, out, **kwargs):
    root = catalogs[0]
    import_catalog([root / f"{which}.jsonl"], "fashion44k", out, images=str(root / f"{which}.zip"), workers=0, **kwargs)


@pytest.fixture(scope="module")
def synced(update_catalogs, micro_checkpoint, tmp_path_factory):
    """(store before the update (a copy), the build after it, its incremental store, the report)."""
    base = tmp_path_factory.mktemp("incremental-embed")
    _import(update_catalogs, "old", base / "build")
    before = embed_build(micro_checkpoint, base / "build")[0]
    shutil.copytree(before.path, base / "before")
    _import(update_catalogs, "new", base / "build", update=True)
    store, report = embed_build(micro_checkpoint, base / "build")
    return EmbeddingStore(base / "before"), base / "build", store, report


def test_only_items_whose_input_changed_are_computed_and_the_rest_are_kept_bit_for_bit(synced, update_catalogs):
    before, build_path, store, report = synced
    sync = read_sync(build_path)
    _, edited, _, _ = update_catalogs
    assert not report.reused and report.items == 600
    computed = {i for i, c in zip(store.ids, store.created) if c not in set(before.created)}
    assert report.computed == len(computed) == store.meta["computed"]
    # the added items and everything edited run again; an item the update left alone never does
    assert set(sync["added"]) <= computed and {i for ids in edited.values() for i in ids if i in store.row_of} <= computed
    assert computed <= set(sync["added"]) | set(sync["changed"])
    assert len(computed) < 200
    kept = [i for i in store.ids if i not in computed]
    assert np.array_equal(np.asarray(store.matrix[store.rows(kept)]), np.asarray(before.matrix[before.rows(kept)]))
    assert all(store.created[store.row_of[i]] == before.created[before.row_of[i]] for i in kept)
    assert not set(sync["removed"]) & set(store.ids)


def test_the_incremental_store_equals_a_fresh_embed_of_the_updated_build(synced, micro_checkpoint):
    _, build_path, store, _ = synced
    fresh, report = embed_build(micro_checkpoint, build_path, EmbedSettings(model_id="fresh", recompute=True))
    assert report.computed == 600
    assert list(fresh.ids) == list(store.ids) and list(fresh.input_digests) == list(store.input_digests)
    # rows computed in other batches: equal up to float32 rounding of differently padded batches
    np.testing.assert_allclose(store.matrix, fresh.matrix, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(store.value_vectors, fresh.value_vectors)
    again = embed_build(micro_checkpoint, build_path)[1]
    assert again.reused and again.computed == 0


def test_an_updated_build_never_serves_the_stale_store(update_catalogs, micro_checkpoint, tmp_path):
    _import(update_catalogs, "old", tmp_path / "b")
    embed_build(micro_checkpoint, tmp_path / "b")
    EmbeddingStore.open(tmp_path / "b")
    _import(update_catalogs, "new", tmp_path / "b", update=True)  # the store is carried over, stale
    with pytest.raises(EmbeddingStoreError, match="earlier version of this build"):
        EmbeddingStore.open(tmp_path / "b")
    embed_build(micro_checkpoint, tmp_path / "b")
    assert EmbeddingStore.open(tmp_path / "b").meta["computed"] < 200


_databases = itertools.count()


def test_write_back_after_an_update_sends_only_the_recomputed_items(synced, kg_server, kg_data_dir, update_catalogs,
                                                                    micro_checkpoint, tmp_path):
    from kg.embedded_server import ServerSettings
    from kg.graph_db import connect
    from kg.graph_load import load_graph

    before, _, store, report = synced
    _import(update_catalogs, "new", tmp_path / "b")  # the new catalog, its graph carrying the old vectors
    with connect(database=f"inc{next(_databases)}", server_settings=ServerSettings(data_dir=kg_data_dir)) as db:
        load_graph(CatalogBuild.open(tmp_path / "b"), db)
        first = write_back(db, before)
        assert first.written == first.items - first.missing_in_graph
        second = write_back(db, store)
        assert second.written == report.computed and second.skipped_current == store.meta["reused"]
        got = db.run("MATCH (i:Item) RETURN collect([i.id, i.embedding]) AS r")[0]["r"]
        assert all(np.array_equal(np.asarray(v, np.float32), store.matrix[store.row_of[i]]) for i, v in got)
