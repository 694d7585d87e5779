"""Seeded item and triple splits on real builds."""
from __future__ import annotations

import numpy as np
import pytest

from etl.catalog_build import CatalogBuild
from etl.splits import SplitSettings, item_splits, string_hashes, triple_splits


def test_item_split_is_a_function_of_key_and_seed(fashion_slice_build):
    ids = CatalogBuild.open(fashion_slice_build).items["item_id"].tolist()
    keys = [f"i:{i}" for i in ids]
    a = item_splits(keys, 0, SplitSettings())
    assert (a == item_splits(keys, 0, SplitSettings())).all()
    assert (a[100:] == item_splits(keys[100:], 0, SplitSettings())).all()  # independent of the other items
    assert (a != item_splits(keys, 1, SplitSettings())).any()
    fractions = np.bincount(a, minlength=3) / len(a)
    assert abs(fractions[0] - 0.8) < 0.06 and abs(fractions[1] - 0.1) < 0.04


def test_listings_of_one_product_share_a_split(fashion_slice_build):
    items = CatalogBuild.open(fashion_slice_build).items
    shared = items.groupby("group")["split"].nunique()
    assert (items["group"].value_counts() > 1).any()  # the slice has repeated titles
    assert (shared == 1).all()


def test_held_out_triples_are_transductive(fashion_slice_build):
    build = CatalogBuild.open(fashion_slice_build)
    triples, split = np.asarray(build.triples), np.asarray(build.triple_split)
    train = triples[split == 0]
    held = triples[split > 0]
    assert 0.05 < len(held) / len(triples) < 0.15
    assert set(np.unique(triples[:, 0])) == set(np.unique(train[:, 0]))  # every item keeps a train triple
    train_pairs = set(map(tuple, train[:, 1:].tolist()))
    assert all(pair in train_pairs for pair in map(tuple, held[:, 1:].tolist()))


def test_triple_split_repairs_items_and_pairs():
    # item 0: (p, x), (q, y); item 1: (p, x). Nearly every triple hashes into the held-out band.
    triples = np.array([[0, 0, 0], [0, 1, 1], [1, 0, 0]], dtype=np.int32)
    almost_all_held = SplitSettings(triple_valid=0.5, triple_test=0.49)
    first = []
    for seed in range(20):
        split = triple_splits(triples, string_hashes(["a", "b"], seed), string_hashes(["p", "q"], seed),
                              string_hashes(["x", "y"], seed), almost_all_held)
        assert split[1] == 0  # (q, y) occurs nowhere else
        assert split[2] == 0  # item 1's only triple
        first.append(split[0])
    assert any(s != 0 for s in first)  # (p, x) of item 0 may be held out: both conditions still hold


def test_settings_are_checked():
    with pytest.raises(ValueError, match="sum to 1"):
        SplitSettings(train=0.8, valid=0.1, test=0.2)
    with pytest.raises(ValueError, match="held-out"):
        SplitSettings(triple_valid=0.6, triple_test=0.5)
