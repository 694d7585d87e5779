"""LPM negatives, vectorised over a batch's pairs.

Value corruption: ⟨item, p, v'⟩ with v' drawn from the train values of property p (falling
back to all values when p has no other value) and ⟨item, p, v'⟩ not a train triple.
Item corruption: ⟨item', p, v⟩ with item' another item of the batch and not a train triple;
-1 where the batch has none. Only train triples are consulted: held-out facts never shape
training.
"""
from __future__ import annotations

import numpy as np

ROUNDS = 16  # rejection-sampling rounds before falling back


def triple_codes(items: np.ndarray, props: np.ndarray, values: np.ndarray, num_props: int, num_values: int) -> np.ndarray:
    return (np.asarray(items, np.int64) * num_props + props) * num_values + values


def is_member(codes: np.ndarray, sorted_codes: np.ndarray) -> np.ndarray:
    if len(sorted_codes) == 0:
        return np.zeros(codes.shape, dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_codes, codes), len(sorted_codes) - 1)
    return sorted_codes[pos] == codes


def negative_values(
    rng: np.random.Generator,
    rows: np.ndarray,  # [P] build rows of the pairs' items
    props: np.ndarray,  # [P]
    k: int,
    prop_offsets: np.ndarray,  # CSR: values of property p are prop_values[off[p]:off[p+1]]
    prop_values: np.ndarray,
    true_codes: np.ndarray,  # sorted codes of all train triples
    num_props: int,
    num_values: int,
) -> np.ndarray:
    """int64 [P, K] corrupted values."""
    out = np.full((len(rows), k), -1, dtype=np.int64)
    lo = prop_offsets[props][:, None]
    n = (prop_offsets[props + 1] - prop_offsets[props])[:, None]
    rows2, props2 = np.broadcast_to(rows[:, None], out.shape), np.broadcast_to(props[:, None], out.shape)
    todo = np.ones(out.shape, dtype=bool)
    for round_ in range(2 * ROUNDS):
        if round_ < ROUNDS:  # the property's own values
            cand = prop_values[lo + (rng.random(out.shape) * n).astype(np.int64)]
        else:  # property with no other value: any value
            cand = rng.integers(0, num_values, out.shape)
        ok = todo & ~is_member(triple_codes(rows2, props2, cand, num_props, num_values), true_codes)
        out[ok] = cand[ok]
        todo &= ~ok
        if not todo.any():
            return out
    raise RuntimeError("could not draw LPM value negatives (every value is true for some pair)")


def negative_items(
    rng: np.random.Generator,
    batch_rows: np.ndarray,  # [B] build rows of the batch
    pair_item: np.ndarray,  # [P] batch positions
    props: np.ndarray,
    values: np.ndarray,
    k: int,
    true_codes: np.ndarray,
    num_props: int,
    num_values: int,
) -> np.ndarray:
    """int64 [P, K] batch positions of corrupted items, -1 where none was found."""
    B = len(batch_rows)
    out = np.full((len(pair_item), k), -1, dtype=np.int64)
    if B < 2:
        return out
    own = pair_item[:, None]
    props2, values2 = np.broadcast_to(props[:, None], out.shape), np.broadcast_to(values[:, None], out.shape)
    todo = np.ones(out.shape, dtype=bool)
    for _ in range(ROUNDS):
        cand = rng.integers(0, B - 1, out.shape)
        cand += cand >= own  # any batch position but the pair's own item
        ok = todo & ~is_member(triple_codes(batch_rows[cand], props2, values2, num_props, num_values), true_codes)
        out[ok] = cand[ok]
        todo &= ~ok
        if not todo.any():
            break
    return out


def any_values(rng: np.random.Generator, rows: np.ndarray, props: np.ndarray, k: int, true_codes: np.ndarray,
               num_props: int, num_values: int) -> np.ndarray:
    """int64 [P, K] values of any property, ⟨item, p, v'⟩ not a train triple (-1 if none found)."""
    out = np.full((len(rows), k), -1, dtype=np.int64)
    if k == 0 or len(rows) == 0:
        return out
    rows2, props2 = np.broadcast_to(rows[:, None], out.shape), np.broadcast_to(props[:, None], out.shape)
    todo = np.ones(out.shape, dtype=bool)
    for _ in range(ROUNDS):
        cand = rng.integers(0, num_values, out.shape)
        ok = todo & ~is_member(triple_codes(rows2, props2, cand, num_props, num_values), true_codes)
        out[ok] = cand[ok]
        todo &= ~ok
        if not todo.any():
            break
    return out


def lpm_negatives(rng: np.random.Generator, index, lpm, rows: np.ndarray, item: np.ndarray, prop: np.ndarray,
                  value: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(neg_value [Q, K + R], neg_item [Q, K]) for LPM positives (batch position ``item``,
    ``prop``, ``value``) of a batch of build ``rows``: K values of the same property, R of any
    property (``lpm.random_negatives``), K other batch items (``lpm.corrupt_items``)."""
    K, num_props, num_values = lpm.num_negatives, len(index.properties), len(index.values)
    neg_value = negative_values(rng, rows[item], prop, K, index.prop_offsets, index.prop_values, index.true_codes,
                                num_props, num_values)
    if lpm.corrupt_items:
        neg_item = negative_items(rng, rows, item, prop, value, K, index.true_codes, num_props, num_values)
    else:
        neg_item = np.full((len(item), K), -1, dtype=np.int64)
    if lpm.random_negatives:
        extra = any_values(rng, rows[item], prop, lpm.random_negatives, index.true_codes, num_props, num_values)
        neg_value = np.concatenate([neg_value, extra], axis=1)
    return neg_value, neg_item
