"""Similar-items scoring on the real fashion600 slice: against a brute-force count, other
listings of the same product left out, and the spread of random pairs."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from k3m.evaluation.pools import make_pools
from k3m.evaluation.tasks import NeighbourTask


@pytest.fixture(scope="module")
def task(slice_build):
    t = NeighbourTask()
    t.prepare(slice_build, make_pools(slice_build, 300, None, seed=0), seed=0)
    return t


def brute_force_share(task, rows, vectors, k=10):
    x = vectors.numpy().astype(np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    where = {int(r): i for i, r in enumerate(rows)}
    shares = []
    for q in task.queries:
        scored = [(-float(x[where[int(q)]] @ x[where[int(d)]]), int(d)) for d in task.database
                  if task.product[d] != task.product[q]]
        top = [d for _, d in sorted(scored)[:k]]
        shares.append(np.mean([task.category[d] == task.category[q] for d in top]) * len(top) / k)
    return float(np.mean(shares))


def test_share_equals_a_brute_force_count(task, frozen_slice_index):
    rows = task.database
    vectors = torch.from_numpy(frozen_slice_index.features.title_vectors(rows))
    metrics = task.measure_vectors(rows, vectors)
    assert metrics["category_share@10"] == pytest.approx(brute_force_share(task, rows, vectors), abs=1e-9)
    assert 0.3 < metrics["category_share@10"] <= 1.0
    assert -1.0 <= metrics["random_pair_cosine"] <= 1.0


def test_same_product_listings_never_count(task):
    # every item's vector is its product's id as a one-hot: only other listings of the same
    # product would be similar, and they are left out, so the neighbours are arbitrary
    rows = task.database
    codes = np.unique(task.product[rows], return_inverse=True)[1]
    vectors = torch.nn.functional.one_hot(torch.from_numpy(codes)).double()
    shares = task.measure_vectors(rows, vectors)["category_share@10"]
    assert shares == pytest.approx(brute_force_share(task, rows, vectors), abs=1e-9)
    one_hot_category = torch.nn.functional.one_hot(torch.from_numpy(task.category[rows] + 1)).double()
    assert task.measure_vectors(rows, one_hot_category)["category_share@10"] > shares


def test_vectors_of_unencoded_items_are_refused(task):
    rows = task.database[:-1]
    with pytest.raises(KeyError, match="not encoded"):
        task.measure_vectors(rows, torch.zeros(len(rows), 4))
