"""Vector search through the graph equals exact brute force, under every constraint."""
from __future__ import annotations

import numpy as np
import pytest

from etl.catalog_build import CatalogBuild
from k3m.query.patterns import ItemFilter
from k3m.query.vector_search import ExactIndex, VectorSearch, VectorSearchError, exact_topk


def brute_force(matrix: np.ndarray, query_row: int, rows: np.ndarray, k: int) -> list[int]:
    """Cosine in float64 over ``rows`` minus the query, sorted by (-score, row)."""
    m = np.asarray(matrix, dtype=np.float64)
    rows = rows[rows != query_row]
    q = m[query_row] / np.linalg.norm(m[query_row])
    scores = (m[rows] @ q) / np.linalg.norm(m[rows], axis=1)
    order = np.lexsort((rows, -scores))
    return rows[order][:k].tolist()


def build_candidates(build, query_row: int, item_filter: ItemFilter) -> np.ndarray:
    """The filter's candidate rows computed from the build's files, not from the graph."""
    items = build.items
    keep = np.ones(build.num_items, dtype=bool)
    triples = np.asarray(build.triples)
    props, values = build.properties, build.values
    for prop in item_filter.same:
        p = props.index(prop)
        mine = set(triples[(triples[:, 0] == query_row) & (triples[:, 1] == p), 2].tolist())
        sharing = {i for i, pp, v in triples.tolist() if pp == p and v in mine}
        keep &= np.isin(np.arange(build.num_items), list(sharing))
    for prop, value in item_filter.equals:
        p, v = props.index(prop), values.index(value)
        keep &= np.isin(np.arange(build.num_items), triples[(triples[:, 1] == p) & (triples[:, 2] == v), 0])
    if item_filter.category is not None:
        keep &= (items["category"] == item_filter.category).to_numpy()
    if item_filter.has_image is not None:
        keep &= items["has_image"].to_numpy() == item_filter.has_image
    return np.flatnonzero(keep)


def test_exact_topk_is_brute_force(query_store):
    matrix = query_store.matrix
    index = ExactIndex(query_store)
    rng = np.random.default_rng(0)
    for row in rng.choice(len(matrix), 15, replace=False).tolist():
        top, scores = index.search(index.matrix[row], 10, exclude=row)
        assert top.tolist() == brute_force(matrix, row, np.arange(len(matrix)), 10)
        assert np.all(np.diff(scores) <= 0) and row not in top
        subset = np.sort(rng.choice(len(matrix), 120, replace=False))
        top, _ = index.search(index.matrix[row], 7, rows=subset, exclude=row)
        assert top.tolist() == brute_force(matrix, row, subset, 7)


def test_exact_topk_edge_cases():
    m = np.array([[1, 0], [0, 0], [1, 1], [-1, 0]], dtype=np.float32)
    rows, scores = exact_topk(m, np.array([1, 0], np.float32), 10)
    assert rows.tolist() == [0, 2, 1, 3]  # zero row scores 0, k larger than n is fine
    assert scores[0] == pytest.approx(1.0) and scores[1] == pytest.approx(2 ** -0.5)
    rows, _ = exact_topk(m, np.array([1, 0], np.float32), 3, rows=np.array([], dtype=np.int64))
    assert rows.tolist() == []


FILTERS = [
    ItemFilter(),
    ItemFilter(same=("brandName",)),
    ItemFilter(category="Tshirts"),
    ItemFilter(category="Watches", has_image=True),  # (no item of this slice lacks an image: see test_injection)
    ItemFilter(equals=(("baseColour", "Black"),)),
    ItemFilter(same=("gender",), equals=(("usage", "Casual"),), has_image=True),
]


@pytest.mark.parametrize("item_filter", FILTERS, ids=lambda f: f.describe())
def test_client_search_equals_brute_force(loaded_db, query_store, query_build, item_filter):
    build = CatalogBuild.open(query_build)
    search = VectorSearch(loaded_db, query_store, "client")
    tested = 0
    for row in (0, 17, 123, 321, 555):
        item_id = build.items["item_id"][row]
        candidates = build_candidates(build, row, item_filter)
        hits = search.similar(item_id, 10, item_filter)
        expected = [build.items["item_id"][r] for r in brute_force(query_store.matrix, row, candidates, 10)]
        assert [h.id for h in hits] == expected
        tested += len(expected) > 0
    assert tested >= 3  # the filters are not vacuous on this slice


@pytest.mark.parametrize("item_filter", [FILTERS[0], FILTERS[1], FILTERS[2]], ids=lambda f: f.describe())
def test_cypher_strategy_equals_client(loaded_db, query_store, item_filter):
    client = VectorSearch(loaded_db, query_store, "client")
    in_cypher = VectorSearch(loaded_db, None, "cypher")
    for item_id in ("10000", "10017", "10321"):
        a = client.similar(item_id, 8, item_filter)
        b = in_cypher.similar(item_id, 8, item_filter)
        assert [h.id for h in a] == [h.id for h in b]
        assert [h.score for h in a] == pytest.approx([h.score for h in b], abs=1e-5)


def test_strategy_follows_the_probed_capabilities(loaded_db, query_store):
    assert not loaded_db.capabilities.native_vector_index  # the embedded ArcadeDB
    assert VectorSearch(loaded_db, query_store).strategy == "client"
    assert VectorSearch(loaded_db, None).strategy == "cypher"
    with pytest.raises(VectorSearchError, match="no native vector index"):
        VectorSearch(loaded_db, query_store, "native")
    with pytest.raises(VectorSearchError, match="needs the build's embeddings"):
        VectorSearch(loaded_db, None, "client")


def test_unknown_item_is_an_error(loaded_db, query_store):
    with pytest.raises(VectorSearchError, match="'no-such-item' has no embedding"):
        VectorSearch(loaded_db, query_store).similar("no-such-item", 5)


# -- ann: the store's FAISS index, graph candidates as its ID selector -------------------
@pytest.fixture(scope="module")
def indexed_store(query_store, tmp_path_factory):
    """The slice's embeddings (a copy) with an HNSW index: small catalogs get none by default."""
    import shutil

    from k3m.embedding.ann_index import AnnSettings, ensure_index
    from k3m.embedding.store import EmbeddingStore

    copy = EmbeddingStore(tmp_path_factory.mktemp("indexed") / query_store.path.name)
    shutil.copytree(query_store.path, copy.path)
    ensure_index(copy, AnnSettings(kind="hnsw", hnsw_m=8, hnsw_ef_search=16))
    return copy


@pytest.mark.parametrize("item_filter", FILTERS, ids=lambda f: f.describe())
def test_ann_search_under_constraints_finds_the_exact_neighbours(loaded_db, indexed_store, query_build, item_filter):
    build = CatalogBuild.open(query_build)
    # every constrained query through the index's ID selector, none ranked exactly up front
    search = VectorSearch(loaded_db, indexed_store, "ann", exact_candidates=0, candidate_fetch=None)
    assert search.strategy == "ann"
    found, wanted = 0, 0
    for row in range(0, 600, 15):
        item_id = build.items["item_id"][row]
        candidates = build_candidates(build, row, item_filter)
        hits = [h.id for h in search.similar(item_id, 10, item_filter)]
        expected = [build.items["item_id"][r] for r in brute_force(indexed_store.matrix, row, candidates, 10)]
        assert len(hits) == len(expected) and set(hits) <= {build.items["item_id"][r] for r in candidates}
        found, wanted = found + len(set(hits) & set(expected)), wanted + len(expected)
    assert wanted >= 40 and found / wanted >= 0.95


@pytest.mark.parametrize("item_filter", FILTERS[1:], ids=lambda f: f.describe())
def test_a_common_constraint_is_checked_on_the_nearest_items(loaded_db, indexed_store, query_build, item_filter):
    """More candidates than ``candidate_fetch``: the index's nearest items are checked against
    the constraint in Cypher (widened x4), a constraint too rare among them falls back to every
    candidate; either way the hits meet it and are the exact ones."""
    build = CatalogBuild.open(query_build)
    search = VectorSearch(loaded_db, indexed_store, "ann", candidate_fetch=5)
    found, wanted, checked = 0, 0, 0
    for row in range(0, 600, 15):
        item_id = build.items["item_id"][row]
        candidates = build_candidates(build, row, item_filter)
        checked += len(candidates) > 5
        hits = [h.id for h in search.similar(item_id, 10, item_filter)]
        expected = [build.items["item_id"][r] for r in brute_force(indexed_store.matrix, row, candidates, 10)]
        assert len(hits) == len(expected) and set(hits) <= {build.items["item_id"][r] for r in candidates}
        found, wanted = found + len(set(hits) & set(expected)), wanted + len(expected)
    assert checked > 0 and wanted >= 40 and found / wanted >= 0.95


def test_the_limited_candidate_list_is_bounded(loaded_db, indexed_store, query_build):
    build = CatalogBuild.open(query_build)
    search = VectorSearch(loaded_db, indexed_store, "ann")
    item_id = build.items["item_id"][0]
    every = search.candidate_rows(item_id, ItemFilter(has_image=True))
    few = search.candidate_rows(item_id, ItemFilter(has_image=True), limit=7)
    assert len(every) > 500 and len(few) == 7 and set(few.tolist()) <= set(every.tolist())


def test_auto_uses_the_index_when_the_store_has_one(loaded_db, indexed_store, query_store):
    assert VectorSearch(loaded_db, indexed_store).strategy == "ann"
    assert VectorSearch(loaded_db, indexed_store, "client").strategy == "client"
    with pytest.raises(VectorSearchError, match="needs the store's nearest-neighbour index"):
        VectorSearch(loaded_db, query_store, "ann")
