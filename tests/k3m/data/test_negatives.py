import numpy as np

from k3m.data.negatives import is_member, negative_items, negative_values, triple_codes


def batch_pairs(index, rows):
    item = np.concatenate([np.full(len(index.pairs(r)), b) for b, r in enumerate(rows)])
    pairs = np.concatenate([index.pairs(r) for r in rows])
    return item, pairs[:, 0], pairs[:, 1]


def test_value_negatives_are_false_values_of_the_same_property(slice_build, slice_index):
    index = slice_index
    P, V = len(index.properties), len(index.values)
    rows = slice_build.item_indices("train")[:48]
    item, prop, value = batch_pairs(index, rows)
    neg = negative_values(np.random.default_rng(0), rows[item], prop, 6, index.prop_offsets, index.prop_values, index.true_codes, P, V)
    assert neg.shape == (len(item), 6) and (neg >= 0).all()
    assert not is_member(triple_codes(rows[item][:, None], prop[:, None], neg, P, V), index.true_codes).any()
    same_property = 0
    for j in range(len(item)):
        own = index.prop_values[index.prop_offsets[prop[j]] : index.prop_offsets[prop[j] + 1]]
        true = set(index.pairs(rows[item[j]])[index.pairs(rows[item[j]])[:, 0] == prop[j], 1].tolist())
        if set(own.tolist()) - true:  # the property has another value: it is used
            assert np.isin(neg[j], own).all()
            same_property += 1
    assert same_property > len(item) // 2


def test_item_negatives_are_other_items_without_the_triple(slice_build, slice_index):
    index = slice_index
    P, V = len(index.properties), len(index.values)
    rows = slice_build.item_indices("train")[:32]
    item, prop, value = batch_pairs(index, rows)
    neg = negative_items(np.random.default_rng(0), rows, item, prop, value, 4, index.true_codes, P, V)
    found = neg >= 0
    assert found.mean() > 0.5  # e.g. every item shares gender=Men with some others, not all
    assert (neg[found] != np.broadcast_to(item[:, None], neg.shape)[found]).all()
    codes = triple_codes(rows[neg.clip(0)], prop[:, None], value[:, None], P, V)
    assert not is_member(codes, index.true_codes)[found].any()
    # a batch of one item has no other item to corrupt with
    single = negative_items(np.random.default_rng(0), rows[:1], item[item == 0] * 0, prop[item == 0], value[item == 0], 4, index.true_codes, P, V)
    assert (single == -1).all()
