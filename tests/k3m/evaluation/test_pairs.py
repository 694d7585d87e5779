"""Alignment pairs and pools on the real fashion600 slice: no product group crosses splits,
positives share a group, negatives do not, hard negatives share the category."""
from __future__ import annotations

import numpy as np
import pytest

from k3m.evaluation.pairs import GroupLeakError, check_groups_within_splits, make_pairs
from k3m.evaluation.pools import make_pools


@pytest.fixture(scope="module")
def pools(slice_build):
    return make_pools(slice_build, max_finetune=300, max_test=None, seed=0)


def test_pools_take_whole_groups_from_one_split(slice_build, pools):
    items = slice_build.items
    assert set(items["split"].iloc[pools.finetune]) == {"train"} and set(items["split"].iloc[pools.test]) == {"test"}
    assert len(pools.finetune) <= 300 and len(pools.test) == len(slice_build.item_indices("test"))
    train = items[items["split"] == "train"]
    taken = set(items["group"].iloc[pools.finetune])
    assert set(pools.finetune) == set(train.index[train["group"].isin(taken)])  # every listing of a taken group
    again = make_pools(slice_build, max_finetune=300, max_test=None, seed=0)
    assert np.array_equal(again.finetune, pools.finetune)
    assert not np.array_equal(make_pools(slice_build, 300, None, seed=1).finetune, pools.finetune)


def test_no_group_crosses_splits(slice_build, pools):
    check_groups_within_splits(slice_build)  # the build itself is split by group
    train = make_pairs(slice_build, pools.finetune, seed=0)
    test = make_pairs(slice_build, pools.test, seed=0)
    groups = slice_build.items["group"].to_numpy()
    split = slice_build.items["split"].to_numpy()
    for pairs, name in ((train, "train"), (test, "test")):
        assert (split[pairs.left] == name).all() and (split[pairs.right] == name).all()
    train_groups = set(groups[np.concatenate([train.left, train.right])])
    assert not train_groups & set(groups[np.concatenate([test.left, test.right])])


def test_pair_labels_follow_groups_and_categories(slice_build, pools):
    pairs = make_pairs(slice_build, pools.finetune, seed=0, hard_negatives=2, random_negatives=1)
    groups = slice_build.items["group"].to_numpy()
    category = slice_build.items["category_index"].to_numpy()
    same = groups[pairs.left] == groups[pairs.right]
    assert pairs.label.sum() > 0
    assert np.array_equal(same, pairs.label)
    assert (pairs.left != pairs.right).all()
    assert (category[pairs.left[pairs.hard]] == category[pairs.right[pairs.hard]]).all()
    assert not (pairs.hard & pairs.label).any()
    n_pos = pairs.label.sum()
    assert pairs.hard.sum() <= 2 * n_pos and (~pairs.label & ~pairs.hard).sum() <= n_pos
    again = make_pairs(slice_build, pools.finetune, seed=0, hard_negatives=2, random_negatives=1)
    assert np.array_equal(again.left, pairs.left) and np.array_equal(again.right, pairs.right)


def test_a_group_spanning_splits_is_refused(slice_build):
    class Leaky:  # the real build's items with one listing moved into another split
        def __init__(self, build):
            self.items = build.items.copy()
            dup = self.items["group"].duplicated(keep=False)
            row = self.items.index[dup & (self.items["split"] == "train")][0]
            self.items.loc[row, "split"] = "test"

    with pytest.raises(GroupLeakError):
        check_groups_within_splits(Leaky(slice_build))


def test_rows_from_two_splits_are_refused(slice_build, pools):
    with pytest.raises(GroupLeakError):
        make_pairs(slice_build, np.concatenate([pools.finetune, pools.test]), seed=0)
