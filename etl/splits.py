"""Deterministic, seeded splits: items into train/valid/test and held-out triples for link prediction.

Both come from hashes of strings (item group or id; item id + property + value), never from
read order or vocabulary positions, so an item lands in the same split whatever else is in
the catalog, and re-running an import reproduces the split exactly.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from etl.catalog_build import TRIPLE_TEST, TRIPLE_TRAIN, TRIPLE_VALID

_SPLITMIX_GAMMA = np.uint64(0x9E3779B97F4A7C15)


@dataclass(frozen=True)
class SplitSettings:
    train: float = 0.8
    valid: float = 0.1
    test: float = 0.1
    triple_valid: float = 0.05  # share of triples held out for link-prediction validation
    triple_test: float = 0.05

    def __post_init__(self):
        fractions = (self.train, self.valid, self.test)
        if min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-9:
            raise ValueError(f"item split fractions must be >= 0 and sum to 1, got {fractions}")
        if min(self.triple_valid, self.triple_test) < 0 or self.triple_valid + self.triple_test >= 1:
            raise ValueError("held-out triple fractions must be >= 0 and sum to < 1")


def string_hashes(strings: list[str], seed: int) -> np.ndarray:
    """uint64 per string, from blake2b keyed by the seed."""
    key = str(seed).encode()
    return np.fromiter(
        (int.from_bytes(hashlib.blake2b(s.encode("utf-8"), digest_size=8, key=key).digest(), "little") for s in strings),
        dtype=np.uint64,
        count=len(strings),
    )


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: spreads combined hashes evenly over uint64."""
    x = x.astype(np.uint64, copy=True)
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


def _unit(h: np.ndarray) -> np.ndarray:
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def item_splits(keys: list[str], seed: int, settings: SplitSettings) -> np.ndarray:
    """int8 per item: 0 train, 1 valid, 2 test, from the hash of its key (group or id)."""
    u = _unit(string_hashes(keys, seed))
    return np.where(u < settings.train, 0, np.where(u < settings.train + settings.valid, 1, 2)).astype(np.int8)


def triple_splits(
    triples: np.ndarray,
    item_hash: np.ndarray,
    property_hash: np.ndarray,
    value_hash: np.ndarray,
    settings: SplitSettings,
) -> np.ndarray:
    """int8 per triple (TRIPLE_TRAIN/VALID/TEST).

    A triple is held out only if its item keeps >= 1 train triple and its (property, value)
    still occurs among train triples, so every held-out fact is predictable from train.
    """
    items, props, values = (triples[:, k].astype(np.int64) for k in range(3))
    h = _mix(item_hash[items] ^ _mix(property_hash[props] + _SPLITMIX_GAMMA * _mix(value_hash[values])))
    u = _unit(h)
    split = np.full(len(triples), TRIPLE_TRAIN, dtype=np.int8)
    split[u < settings.triple_valid + settings.triple_test] = TRIPLE_TEST
    split[u < settings.triple_valid] = TRIPLE_VALID
    _keep_one_in_train(split, items, u)
    _keep_one_in_train(split, props * (int(values.max(initial=0)) + 1) + values, u)
    return split


def _keep_one_in_train(split: np.ndarray, groups: np.ndarray, u: np.ndarray) -> None:
    """For every group with no train triple, move its lowest-hash triple back to train."""
    if len(groups) == 0:
        return
    order = np.lexsort((u, groups))
    sorted_groups = groups[order]
    starts = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]])
    in_train = np.add.reduceat((split[order] == TRIPLE_TRAIN).astype(np.int64), starts)
    split[order[starts[in_train == 0]]] = TRIPLE_TRAIN
