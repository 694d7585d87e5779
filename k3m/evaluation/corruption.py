"""Missing / noise corruption plans: which title and image each evaluated item shows.

A plan is two per-item arrays, ``title_source`` and ``image_source``: the build row whose
title (image) the item shows, or -1 when the modality is removed. The data collator applies
them through its ``title_source``/``image_source`` hooks, so the model sees exactly what a
dirty catalog would give it, and presence masks stay honest (a removed modality is absent,
never a zero tensor).

Settings (the paper's; ratio r in [0, 1], N = number of items the plan covers, exactly
k = round(r·N) items affected, halves rounded up):

- TMR / IMR: k items lose their title / image.
- MMR: k items each lose one modality: ceil(k/2) of them the title, the rest the image,
  assigned at random.
- TNR / INR: k items show the title / image of another item.
- TINR: k items show the title *and* image of another item (the same donor for both: the
  listing shows a different product's page, only the knowledge stays its own).
- MNR: k items get one modality swapped: ceil(k/2) the title, the rest the image.

Determinism and nesting: a plan depends only on (seed, setting, split tag) for the order
of affected items and the donors, and on the ratio for how many of them are taken, so the
20% plan's affected items are a subset of the 50% plan's. Donors come from the same item
pool, have the swapped modality present, are never the item itself and never an item of
the same product (same ``group`` or identical title), because swapping in the same
product's title is no noise at all.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from etl.errors import InvalidValue

MISSING = -1


@dataclass(frozen=True)
class CorruptionSetting:
    name: str
    kind: str  # "missing" | "noise"
    target: str  # "title" | "image" | "both" | "mixed"
    description: str


SETTINGS: dict[str, CorruptionSetting] = {
    s.name: s
    for s in (
        CorruptionSetting("TMR", "missing", "title", "title missing"),
        CorruptionSetting("IMR", "missing", "image", "image missing"),
        CorruptionSetting("MMR", "missing", "mixed", "title or image missing"),
        CorruptionSetting("TNR", "noise", "title", "title from another item"),
        CorruptionSetting("INR", "noise", "image", "image from another item"),
        CorruptionSetting("TINR", "noise", "both", "title and image from another item"),
        CorruptionSetting("MNR", "noise", "mixed", "title or image from another item"),
    )
}


def affected_count(ratio: float, n: int) -> int:
    """round(ratio·n) with halves rounded up (Python's round() would round half to even)."""
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"ratio must be in [0, 1], got {ratio}")
    return int(np.floor(ratio * n + 0.5))


@dataclass(frozen=True)
class CorruptionPlan:
    setting: str
    ratio: float
    seed: int
    items: np.ndarray  # int64 [N] build rows covered by the plan
    title_source: np.ndarray  # int64 [N] build row whose title is shown, -1 = missing
    image_source: np.ndarray  # int64 [N] build row whose image is shown, -1 = missing

    @property
    def title_changed(self) -> np.ndarray:
        return self.title_source != self.items

    @property
    def image_changed(self) -> np.ndarray:
        return self.image_source != self.items

    @property
    def affected(self) -> np.ndarray:
        return self.title_changed | self.image_changed


def _rng(seed: int, setting: str, split_tag: str) -> np.random.Generator:
    # crc32, not hash(): Python's str hash is salted per process, plans must not be.
    key = [int(seed), zlib.crc32(setting.encode()), zlib.crc32(split_tag.encode())]
    return np.random.default_rng(np.random.SeedSequence(key))


def _draw_donors(
    rng: np.random.Generator,
    pool: np.ndarray,
    items: np.ndarray,
    product_key: np.ndarray,
    max_rounds: int = 64,
) -> np.ndarray:
    """For each position of ``items``, a donor position from ``pool`` that is another product.

    ``pool`` and the return value are positions into ``items``; ``product_key`` holds an int
    per position (-1 = unknown) and two positions with the same non-negative key are the
    same product. Rejection sampling, vectorised; a position with no valid donor left after
    ``max_rounds`` falls back to an exhaustive search, and raises if the pool has none.
    """
    n = len(items)
    if len(pool) == 0:
        raise InvalidValue("no donor item has the modality to swap in")
    donors = pool[rng.integers(0, len(pool), size=n)]
    positions = np.arange(n)

    def bad(pos, don):
        same = product_key[pos] == product_key[don]
        return (pos == don) | (same & (product_key[pos] >= 0))

    todo = np.flatnonzero(bad(positions, donors))
    for _ in range(max_rounds):
        if len(todo) == 0:
            return donors
        donors[todo] = pool[rng.integers(0, len(pool), size=len(todo))]
        todo = todo[bad(todo, donors[todo])]
    for pos in todo:
        ok = pool[~bad(np.full(len(pool), pos), pool)]
        if len(ok) == 0:
            raise InvalidValue(f"item {items[pos]} has no donor of another product in the pool")
        donors[pos] = ok[rng.integers(0, len(ok))]
    return donors


def _donors_unless_absent(rng, present: np.ndarray, hit: np.ndarray, items: np.ndarray,
                          product_key: np.ndarray) -> np.ndarray:
    """Donors for one modality; where no item has it and none is to be swapped, every item
    is its own source (a setting that does swap it still gets the clear error)."""
    if not present.any() and not hit.any():
        return np.arange(len(items))
    return _draw_donors(rng, np.flatnonzero(present), items, product_key)


def plan_corruption(
    setting: str,
    ratio: float,
    items: np.ndarray,
    *,
    seed: int,
    split_tag: str,
    title_present: np.ndarray,
    image_present: np.ndarray,
    product_key: np.ndarray | None = None,
) -> CorruptionPlan:
    """The plan for ``items`` (build rows) under ``setting`` at ``ratio``.

    ``title_present``/``image_present``/``product_key`` are aligned with ``items``;
    ``product_key`` is an int per item identifying its product (-1 = unknown), see
    :func:`product_keys`. ``split_tag`` separates the streams of fine-tuning and test
    items so that they are corrupted independently.
    """
    if setting not in SETTINGS:
        raise InvalidValue(f"unknown setting {setting!r}; choose from {sorted(SETTINGS)}")
    spec = SETTINGS[setting]
    items = np.asarray(items, dtype=np.int64)
    n = len(items)
    title_present = np.asarray(title_present, dtype=bool)
    image_present = np.asarray(image_present, dtype=bool)
    product_key = np.full(n, -1, dtype=np.int64) if product_key is None else np.asarray(product_key, dtype=np.int64)

    rng = _rng(seed, setting, split_tag)
    # Everything random is drawn for all N items regardless of the ratio: nested plans.
    order = rng.permutation(n)
    k = affected_count(ratio, n)
    chosen = np.zeros(n, dtype=bool)
    chosen[order[:k]] = True
    # Mixed settings alternate along the random order: exactly ceil(k/2) titles, floor(k/2)
    # images, and an item keeps its modality at every ratio.
    title_first = np.zeros(n, dtype=bool)
    title_first[order[0::2]] = True

    if spec.target == "title":
        title_hit, image_hit = chosen, np.zeros(n, dtype=bool)
    elif spec.target == "image":
        title_hit, image_hit = np.zeros(n, dtype=bool), chosen
    elif spec.target == "both":
        title_hit, image_hit = chosen, chosen
    else:
        title_hit, image_hit = chosen & title_first, chosen & ~title_first

    title_source = items.copy()
    image_source = items.copy()
    if spec.kind == "missing":
        title_source[title_hit] = MISSING
        image_source[image_hit] = MISSING
    else:
        # A modality no item has (a text-only catalog's images) is not asked of a donor: a
        # title swap there needs only titles. Where every modality occurs the draws are as
        # before, so the plans of such catalogs are unchanged.
        if spec.target == "both":
            has = np.ones(n, dtype=bool)
            for present in (title_present, image_present):
                if present.any():
                    has &= present
            donors = _draw_donors(rng, np.flatnonzero(has), items, product_key)
            title_donor = image_donor = donors
        else:
            title_donor = _donors_unless_absent(rng, title_present, title_hit, items, product_key)
            image_donor = _donors_unless_absent(rng, image_present, image_hit, items, product_key)
        title_source[title_hit] = items[title_donor[title_hit]]
        image_source[image_hit] = items[image_donor[image_hit]]
    return CorruptionPlan(setting, float(ratio), int(seed), items, title_source, image_source)


def product_keys(build, items: np.ndarray) -> np.ndarray:
    """An int per item naming its product: its ``group`` or else its exact title (-1 = neither)."""
    table = build.items.iloc[np.asarray(items)]
    key = table["group"].where(table["group"].notna(), "title:" + table["title"].astype("string"))
    codes, _ = key.factorize()
    return np.asarray(codes, dtype=np.int64)
