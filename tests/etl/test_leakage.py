"""The label-leakage measure on a real slice: a restated label scores, real attributes do not."""
from __future__ import annotations

import numpy as np

from etl.catalog_build import CatalogBuild
from etl.leakage import LEAKAGE_MARGIN, label_leakage

SPLIT = {"train": 0, "valid": 1, "test": 2}


def _inputs(build):
    items = build.items
    return items["category_index"].to_numpy(), np.array([SPLIT[s] for s in items["split"]]), np.asarray(build.triples)


def test_an_exact_copy_of_the_label_is_the_top_suspect(slice_build):
    category, split, triples = _inputs(slice_build)
    # a property "label" whose value is the item's category: appended as property P, values shifted past V
    p, v = len(slice_build.properties), len(slice_build.values)
    copy = np.stack([np.arange(len(category)), np.full(len(category), p), v + category], axis=1)[category >= 0]
    both = np.concatenate([triples, copy])
    both = both[np.lexsort((both[:, 2], both[:, 1], both[:, 0]))]
    report = label_leakage(category, split, both, slice_build.properties + ["label"], slice_build.categories)
    top = report["properties"][0]
    assert top["property"] == "label" and report["suspects"][0] == "label"
    held = (split != 0) & (category >= 0)
    train_cats = set(category[(split == 0) & (category >= 0)])
    assert top["accuracy"] == round(float(np.mean([c in train_cats for c in category[held]])), 4)
    assert report["baseline"] < top["accuracy"] - LEAKAGE_MARGIN
    assert label_leakage(category, split, both, slice_build.properties + ["label"], reviewed=("label",))["suspects"] \
        == [s for s in report["suspects"] if s != "label"]


def test_baseline_and_a_property_by_hand(slice_build):
    category, split, triples = _inputs(slice_build)
    report = label_leakage(category, split, triples, slice_build.properties, slice_build.categories, top=None)
    train, held = (split == 0) & (category >= 0), (split != 0) & (category >= 0)
    majority = np.bincount(category[train]).argmax()
    assert report["baseline"] == round(float(np.mean(category[held] == majority)), 4)
    assert report["baseline_category"] == slice_build.categories[majority]
    # gender by hand: per value the most frequent train category; items without it: theirs
    g = slice_build.properties.index("gender")
    value_of = {i: v for i, p, v in triples.tolist() if p == g}
    def guess_for(key):
        cats = [c for i, c in enumerate(category) if train[i] and value_of.get(i) == key]
        return np.bincount(cats).argmax() if cats else majority
    guesses = {key: guess_for(key) for key in set(value_of.values()) | {None}}
    expected = np.mean([guesses[value_of.get(i)] == category[i] for i in np.flatnonzero(held)])
    gender = next(p for p in report["properties"] if p["property"] == "gender")
    assert gender["accuracy"] == round(float(expected), 4)
    assert len(report["properties"]) == len(slice_build.properties)


def test_summary_of_a_real_import_carries_the_report(fashion_slice_build):
    report = CatalogBuild.open(fashion_slice_build).summary["label_leakage"]
    assert report["suspects"] == [] and report["not_leakage"] == ["brandName"]
    assert 0 < report["baseline"] < 1 and len(report["properties"]) == len(CatalogBuild.open(fashion_slice_build).properties)
