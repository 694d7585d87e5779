"""Label leakage: how well each property's value alone predicts the category.

A column that restates the label (a department, a sub-category, a product-type code) makes
item classification trivial for any model that reads the item's knowledge, and the
evaluation then measures nothing. The measure, per property ``P``:

* the key of an item is its value of ``P`` (the sorted set of values when it has several),
  or "no ``P``";
* on the **train** split, each key predicts its most frequent category (ties: the first
  category in vocabulary order);
* on the held-out items (valid + test), the accuracy of that guess (a key never seen in
  train guesses the most frequent train category).

It is reported beside the baseline, always guessing the most frequent train category, on the
same items. Fitting on train and scoring held-out items keeps an id-like property (a value per
item) from looking predictive. A property that is present on a few items only cannot move the
accuracy by more than its coverage, so attributes specific to one category (a watch's dial
shape) stay below the threshold unless they cover a large part of the catalog.

A property is a **suspect** when its accuracy beats the baseline by at least
``LEAKAGE_MARGIN`` (25 percentage points) even two standard errors below its estimate (so
a few hundred held-out items of a small catalog do not flag an attribute by chance), with at
least ``MIN_HELDOUT`` held-out items with a category, unless the mapping lists it under
``not_leakage`` (reviewed: a real attribute that happens to predict the category). Calibration on all of fashion44k (baseline 14.9%, always
"Tshirts"): its ``subCategory`` column, a restatement of the label that its mapping excludes,
scores 55.1% (+40 points); ``brandName`` 50.6% (+36: brands specialise, which its mapping
declares ``not_leakage``); ``masterCategory`` +14; every other attribute at most +22
(``Type``, on 23% of the items). A 25-point margin flags the first two and no ordinary
attribute.
"""
from __future__ import annotations

import numpy as np

LEAKAGE_MARGIN = 0.25
MIN_HELDOUT = 30


def label_leakage(category: np.ndarray, split: np.ndarray, triples: np.ndarray, properties: list[str],
                  categories: list[str] | None = None, top: int | None = None, reviewed: tuple[str, ...] = ()) -> dict:
    """The leakage report (see the module docstring).

    ``category``: category index per item (-1 = none); ``split``: 0 train, 1 valid, 2 test per
    item; ``triples``: int [T, 3] (item, property, value) sorted by item then property then
    value; ``properties``: the property vocabulary; every property is listed, best first,
    unless ``top`` limits them (suspects are always listed). ``reviewed``: properties the mapping declares
    ``not_leakage`` (real attributes that happen to predict the category): never suspects."""
    category = np.asarray(category, dtype=np.int64)
    split = np.asarray(split)
    n_categories = int(category.max()) + 1 if len(category) else 0
    train = (split == 0) & (category >= 0)
    held = (split != 0) & (category >= 0)
    report = {
        "measure": "accuracy on held-out items of the train split's most frequent category per value of the property",
        "margin": LEAKAGE_MARGIN,
        "heldout_items": int(held.sum()),
        "baseline": None,
        "baseline_category": None,
        "properties": [],
        "suspects": [],
        "not_leakage": sorted(reviewed),
    }
    if not train.any() or not held.any() or n_categories < 2:
        return report
    train_counts = np.bincount(category[train], minlength=n_categories)
    held_counts = np.bincount(category[held], minlength=n_categories)
    majority = int(np.argmax(train_counts))
    baseline = float(held_counts[majority] / held.sum())
    report["baseline"] = round(float(baseline), 4)
    report["baseline_category"] = categories[majority] if categories is not None else majority

    triples = np.asarray(triples)
    order = np.argsort(triples[:, 1], kind="stable")  # by property, keeping item/value order
    bounds = np.searchsorted(triples[order, 1], np.arange(len(properties) + 1))
    scored = []
    for p, name in enumerate(properties):
        rows = triples[order[bounds[p]:bounds[p + 1]]]
        if not len(rows):
            continue
        accuracy, coverage = _score(rows[:, 0], rows[:, 2], category, train, held, train_counts, held_counts, majority)
        scored.append({"property": name, "accuracy": round(accuracy, 4), "gain": round(accuracy - baseline, 4),
                       "coverage": round(coverage, 4)})
    scored.sort(key=lambda s: (-s["accuracy"], s["property"]))
    n = report["heldout_items"]

    def clearly_over(s: dict) -> bool:  # even two standard errors below its estimate
        error = np.sqrt(s["accuracy"] * (1 - s["accuracy"]) / n)
        return s["gain"] - 2 * error >= LEAKAGE_MARGIN

    report["suspects"] = [s["property"] for s in scored
                          if n >= MIN_HELDOUT and clearly_over(s) and s["property"] not in reviewed]
    listed = scored if top is None else scored[:top] + [s for s in scored[top:] if s["property"] in report["suspects"]]
    report["properties"] = listed
    return report


def _score(items, values, category, train, held, train_counts, held_counts, majority) -> tuple[float, float]:
    """(held-out accuracy, held-out coverage) of one property given its (item, value) rows."""
    n_categories = len(train_counts)
    unique_items, starts, sizes = np.unique(items, return_index=True, return_counts=True)
    if sizes.max() == 1:
        keys = values[starts].astype(np.int64)
    else:  # several values: the sorted set is the key
        ids: dict[tuple, int] = {}
        keys = np.array([ids.setdefault(tuple(values[s:s + n].tolist()), len(ids)) for s, n in zip(starts, sizes)],
                        dtype=np.int64)
    cats = category[unique_items]
    in_train, in_held = train[unique_items], held[unique_items]

    # most frequent train category per key
    codes = keys[in_train] * n_categories + cats[in_train]
    code, count = np.unique(codes, return_counts=True)
    key_of, cat_of = code // n_categories, code % n_categories
    best = np.lexsort((cat_of, -count, key_of))
    first = np.ones(len(best), dtype=bool)
    first[1:] = key_of[best][1:] != key_of[best][:-1]
    known_keys, known_cats = key_of[best][first], cat_of[best][first]

    # held-out items with the property: their key's guess (unseen key: the overall guess)
    held_keys, held_cats = keys[in_held], cats[in_held]
    guess = np.full(len(held_keys), majority)
    if len(known_keys):
        at = np.minimum(np.searchsorted(known_keys, held_keys), len(known_keys) - 1)
        seen = known_keys[at] == held_keys
        guess[seen] = known_cats[at[seen]]
    correct = int((guess == held_cats).sum())

    # held-out items without it: the most frequent train category among train items without it
    lacking_train = train_counts - np.bincount(cats[in_train], minlength=n_categories)
    lacking_guess = int(np.argmax(lacking_train)) if lacking_train.any() else majority
    lacking_held = held_counts - np.bincount(held_cats, minlength=n_categories)
    correct += int(lacking_held[lacking_guess])
    total = int(held_counts.sum())
    return correct / total, len(held_keys) / total


def build_leakage(build, top: int | None = None) -> dict:
    """The report for a :class:`etl.catalog_build.CatalogBuild` (`k3m kg stats`)."""
    from etl.catalog_build import SPLITS

    items = build.items
    split = items["split"].map({name: k for k, name in enumerate(SPLITS)}).to_numpy()
    reviewed = tuple(build.manifest.get("mapping", {}).get("not_leakage") or ())
    return label_leakage(items["category_index"].to_numpy(), split, np.asarray(build.triples), build.properties,
                         build.categories, top=top, reviewed=reviewed)
