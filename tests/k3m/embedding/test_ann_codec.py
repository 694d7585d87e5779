"""The index's compressed codec (SQ8: a byte per dimension) for catalogs whose flat vectors
would not fit the memory budget: candidates rescored on the store's exact rows keep the
recall and give exact cosines. Real vectors: the micro checkpoint's of the fashion600 slice."""
from __future__ import annotations

import numpy as np
import pytest

from k3m.embedding.ann_index import AnnSettings, build_index, ensure_index, save_index, store_version, unit_rows
from k3m.embedding.store import EmbeddingStore
from k3m.query.vector_search import ExactIndex

SQ8 = {"hnsw": AnnSettings(kind="hnsw", hnsw_m=8, hnsw_ef_search=16, codec="sq8"),
       "ivf": AnnSettings(kind="ivf", ivf_nprobe=6, codec="sq8")}


@pytest.mark.parametrize("kind", sorted(SQ8))
def test_sq8_rescored_on_the_store_finds_the_exact_neighbours(query_store, kind):
    import faiss

    ann = build_index(query_store.matrix, store_version(query_store.meta), SQ8[kind])
    flat = build_index(query_store.matrix, store_version(query_store.meta), AnnSettings(kind=kind, hnsw_m=8, codec="flat"))
    assert ann.codec == "sq8" and ann.describe()["codec"] == "sq8" and flat.codec == "flat"
    rows, dim = query_store.matrix.shape
    vectors = rows * dim  # the flat index holds them as float32, SQ8 as bytes
    assert len(faiss.serialize_index(ann.index)) < len(faiss.serialize_index(flat.index)) - 2.5 * vectors
    ann.vectors = query_store.matrix  # as AnnIndex.open(store) sets it
    exact = ExactIndex(query_store)
    found = []
    for row in range(len(query_store.ids)):
        truth = exact.search(exact.matrix[row], 10, exclude=row)[0]
        rows, scores = ann.search(exact.matrix[row], 10, exclude=row)
        assert row not in rows.tolist() and len(set(rows.tolist())) == len(rows) == 10
        np.testing.assert_allclose(scores, unit_rows(exact.matrix[rows]) @ unit_rows(exact.matrix[[row]])[0], atol=1e-5)
        found.append(len(set(truth.tolist()) & set(rows.tolist())) / 10)
        if row % 50 == 0:  # the codes' order, rescored later on a kept part: the same answer
            approx_rows, approx_scores = ann.search(exact.matrix[row], 40, exclude=row, exact=False)
            assert not np.allclose(approx_scores[:10], scores)  # SQ8 scores, not the exact cosines
            later_rows, later_scores = ann.rescored(exact.matrix[row], approx_rows, approx_scores, 10)
            assert later_rows.tolist() == rows.tolist() and np.allclose(later_scores, scores)
    assert np.mean(found) >= 0.95
    # a constraint: only candidates, best first
    few = np.array([3, 200, 401, 599])
    rows, scores = ann.search(query_store.matrix[0], 10, few, exclude=3)
    assert sorted(rows.tolist()) == [200, 401, 599] and np.all(np.diff(scores) <= 1e-7)


def test_auto_chooses_sq8_past_the_memory_budget(query_store, tmp_path):
    import shutil

    copy = EmbeddingStore(tmp_path / "store")
    shutil.copytree(query_store.path, copy.path)
    rows, dim = query_store.matrix.shape
    assert AnnSettings().codec_for(rows, dim) == "flat"
    assert AnnSettings().codec_for(1_000_000, 1408) == "sq8"  # 5.6 GB flat
    small_budget = AnnSettings(kind="hnsw", hnsw_m=8, flat_limit_bytes=rows * dim * 4 - 1)
    made = ensure_index(copy, small_budget)
    opened = copy.ann_index()
    assert made.codec == opened.codec == "sq8" and opened.vectors is not None
    save_index(made, copy.path)
    assert EmbeddingStore(copy.path).ann_index().describe()["codec"] == "sq8"


def test_wide_vectors_get_an_index_sooner():
    settings = AnnSettings()
    assert settings.kind_for(44_441, 128) == "exact" and settings.kind_for(44_441) == "exact"
    assert settings.kind_for(44_441, 1408) == "hnsw"  # exact: ~25 ms a query at 1,408 floats
    assert settings.kind_for(4_000, 1408) == "exact" and settings.kind_for(1_000_000, 1408) == "ivf"
