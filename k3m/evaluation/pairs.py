"""Product-alignment pairs: are two listings the same product?

Ground truth is the build's ``group`` column (fashion44k: the normalised title; in general
a product code named in the mapping). Positives are two items of the same group; every
positive (a, b) brings ``hard_negatives`` pairs (a, x) with x of the same category but
another group — listings a category classifier cannot tell apart — and
``random_negatives`` pairs (a, y) with y of any other group.

Pairs are built inside one item split only, and :func:`check_groups_within_splits` refuses
a build where a group spans two splits: the same product must never be in the fine-tuning
and the test pairs at once, or alignment would reward memorising products.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np


class GroupLeakError(ValueError):
    """A ground-truth product group has items in more than one split."""


@dataclass(frozen=True)
class AlignmentPairs:
    left: np.ndarray  # int64 [M] build rows
    right: np.ndarray  # int64 [M]
    label: np.ndarray  # bool [M], True = same product
    hard: np.ndarray  # bool [M], True = same-category negative

    def __len__(self) -> int:
        return len(self.label)


def check_groups_within_splits(build) -> None:
    items = build.items
    grouped = items[items["group"].notna()]
    spans = grouped.groupby("group")["split"].nunique()
    leaking = spans[spans > 1]
    if len(leaking):
        raise GroupLeakError(
            f"{len(leaking)} product groups span several splits (e.g. {leaking.index[0]!r}); "
            "alignment needs a build split by group"
        )


def make_pairs(
    build,
    rows: np.ndarray,
    *,
    seed: int,
    max_positives_per_group: int = 3,
    hard_negatives: int = 1,
    random_negatives: int = 1,
    max_positives: int | None = None,
) -> AlignmentPairs:
    """Alignment pairs among ``rows`` (build rows of one split); deterministic in ``seed``.

    ``max_positives_per_group`` caps the pairs a large group contributes (all C(n, 2) pairs
    of a 50-item group would swamp the set); ``max_positives`` caps the total.
    """
    check_groups_within_splits(build)
    table = build.items
    rows = np.asarray(rows, dtype=np.int64)
    splits = table["split"].iloc[rows].unique()
    if len(splits) > 1:
        raise GroupLeakError(f"alignment pairs must come from one split, got rows of {sorted(splits)}")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), zlib.crc32(str(splits[0]).encode())]))
    group_codes, _ = table["group"].iloc[rows].factorize()
    category = table["category_index"].to_numpy()[rows]

    # positives: sampled pairs inside each group of >= 2 items
    order = np.argsort(group_codes, kind="stable")
    codes_sorted = group_codes[order]
    bounds = np.flatnonzero(np.diff(codes_sorted)) + 1
    left, right = [], []
    for members in np.split(order, bounds):
        if len(members) < 2 or group_codes[members[0]] < 0:
            continue
        a, b = np.triu_indices(len(members), k=1)
        take = rng.permutation(len(a))[:max_positives_per_group]
        left.append(members[a[take]])
        right.append(members[b[take]])
    pos_l = np.concatenate(left) if left else np.empty(0, dtype=np.int64)
    pos_r = np.concatenate(right) if right else np.empty(0, dtype=np.int64)
    if max_positives is not None and len(pos_l) > max_positives:
        keep = np.sort(rng.permutation(len(pos_l))[:max_positives])
        pos_l, pos_r = pos_l[keep], pos_r[keep]

    # negatives: positions of another group, same category (hard) or any (random)
    by_category: dict[int, np.ndarray] = {c: np.flatnonzero(category == c) for c in np.unique(category)}
    neg_l, neg_r, neg_hard = [], [], []
    everyone = np.arange(len(rows))

    def other_group(a: int, pool: np.ndarray) -> int | None:
        for _ in range(32):  # rejection first: pools are large, collisions rare
            x = int(pool[rng.integers(len(pool))])
            if x != a and (group_codes[x] != group_codes[a] or group_codes[a] < 0):
                return x
        ok = pool[(pool != a) & ((group_codes[pool] != group_codes[a]) | (group_codes[a] < 0))]
        return int(ok[rng.integers(len(ok))]) if len(ok) else None

    for a in pos_l:
        for pool, hard, count in ((by_category[category[a]], True, hard_negatives), (everyone, False, random_negatives)):
            for _ in range(count):
                x = other_group(int(a), pool)
                if x is not None:
                    neg_l.append(a)
                    neg_r.append(x)
                    neg_hard.append(hard)

    left_pos = np.concatenate([pos_l, np.asarray(neg_l, dtype=np.int64)])
    right_pos = np.concatenate([pos_r, np.asarray(neg_r, dtype=np.int64)])
    label = np.concatenate([np.ones(len(pos_l), bool), np.zeros(len(neg_l), bool)])
    hard = np.concatenate([np.zeros(len(pos_l), bool), np.asarray(neg_hard, dtype=bool)])
    return AlignmentPairs(rows[left_pos].astype(np.int64), rows[right_pos].astype(np.int64), label, hard)
