"""The item pools of an evaluation: which train-split items fine-tune heads, which
test-split items are tested.

Pools are drawn whole groups at a time (all listings of a product or none), so product
alignment keeps its positive pairs, and deterministically from the seed, so every model
and every corruption setting is evaluated on the very same items. ``None`` = the whole
split.
"""
from __future__ import annotations

import zlib

import numpy as np

from k3m.evaluation.tasks.base import Pools


def sample_split(build, split: str, max_items: int | None, seed: int) -> np.ndarray:
    rows = build.item_indices(split)
    if max_items is None or len(rows) <= max_items:
        return rows.astype(np.int64)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), zlib.crc32(split.encode())]))
    table = build.items.iloc[rows]
    # items without a group are their own group
    key = table["group"].where(table["group"].notna(), "row:" + table.index.astype(str))
    codes, _ = key.factorize()
    order = rng.permutation(codes.max() + 1)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    by_rank = np.argsort(rank[codes], kind="stable")  # items grouped, groups in random order
    sizes = np.bincount(codes)[codes[by_rank]]
    # take whole groups while the pool has room; a group bigger than what is left is skipped
    taken = np.zeros(len(rows), dtype=bool)
    room = max_items
    start = 0
    while start < len(by_rank) and room > 0:
        size = sizes[start]
        if size <= room:
            taken[by_rank[start : start + size]] = True
            room -= size
        start += size
    return np.sort(rows[taken]).astype(np.int64)


def make_pools(build, max_finetune: int | None, max_test: int | None, seed: int) -> Pools:
    return Pools(
        finetune=sample_split(build, "train", max_finetune, seed),
        test=sample_split(build, "test", max_test, seed),
    )
