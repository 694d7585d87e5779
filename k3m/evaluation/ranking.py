"""Filtered ranking of value answers for ⟨item, property, ?⟩ queries.

Standard filtered setting (Bordes et al. 2013; PyKEEN's ``filtered=True``): the true value
is ranked against the candidates after removing every *other* value known to be true for
the same (item, property) in any split — a model is not punished for ranking another
correct answer first. Ties get the *realistic* rank, the expectation under random tie
breaking, ``1 + #better + #tied / 2`` (PyKEEN's default), so a constant scorer earns the
rank of chance and not rank 1.

Candidates are value ids ``0..V-1``; a per-property candidate mask restricts them (attribute
QA ranks only the values of the asked property).
"""
from __future__ import annotations

import numpy as np
import torch


class KnownFacts:
    """All true values of each (item, property), for filtering, from a triple array."""

    def __init__(self, triples: np.ndarray, num_properties: int):
        triples = np.asarray(triples, dtype=np.int64)
        self.num_properties = int(num_properties)
        keys = triples[:, 0] * self.num_properties + triples[:, 1]
        order = np.lexsort((triples[:, 2], keys))
        self._keys = keys[order]
        self._values = triples[order, 2]

    def values_of(self, item: int, prop: int) -> np.ndarray:
        key = item * self.num_properties + prop
        lo, hi = np.searchsorted(self._keys, [key, key + 1])
        return self._values[lo:hi]

    def filter_mask(self, items, props, answers, num_values: int) -> torch.Tensor:
        """bool [Q, V]: True where a value is another true answer of query q (to remove)."""
        items = np.asarray(items, dtype=np.int64)
        props = np.asarray(props, dtype=np.int64)
        answers = np.asarray(answers, dtype=np.int64)
        keys = items * self.num_properties + props
        lo = np.searchsorted(self._keys, keys, side="left")
        hi = np.searchsorted(self._keys, keys, side="right")
        counts = hi - lo
        rows = np.repeat(np.arange(len(keys)), counts)
        starts = np.repeat(lo - np.cumsum(np.concatenate([[0], counts[:-1]])), counts)
        cols = self._values[np.arange(len(rows)) + starts]
        mask = torch.zeros(len(keys), num_values, dtype=torch.bool)
        mask[torch.from_numpy(rows), torch.from_numpy(cols)] = True
        mask[torch.arange(len(keys)), torch.from_numpy(answers)] = False
        return mask


def property_candidates(triples: np.ndarray, num_properties: int, num_values: int) -> torch.Tensor:
    """bool [P, V]: value v is a candidate for property p when ⟨·, p, v⟩ occurs in ``triples``."""
    triples = np.asarray(triples, dtype=np.int64)
    mask = torch.zeros(num_properties, num_values, dtype=torch.bool)
    mask[torch.from_numpy(triples[:, 1]), torch.from_numpy(triples[:, 2])] = True
    return mask


def realistic_ranks(
    scores: torch.Tensor,
    answers: torch.Tensor,
    exclude: torch.Tensor | None = None,
    higher_is_better: bool = True,
) -> torch.Tensor:
    """Rank (1-based, float) of ``scores[q, answers[q]]`` among the non-excluded columns.

    ``exclude`` is bool [Q, C], True for columns that do not compete (filtered true answers,
    non-candidates); the answer's own column must not be excluded.
    """
    scores = scores if higher_is_better else -scores
    q = torch.arange(scores.shape[0])
    true = scores[q, answers].unsqueeze(1)
    if exclude is not None and bool(exclude[q, answers].any()):
        raise ValueError("a query's own answer is excluded from its candidates")
    better = scores > true
    tied = scores == true
    if exclude is not None:
        better &= ~exclude
        tied &= ~exclude
    # the answer ties with itself: remove that one from the tie count
    return 1.0 + better.sum(1).double() + (tied.sum(1).double() - 1.0) / 2.0


def rank_queries(score_fn, items, props, answers, known: KnownFacts, num_values: int,
                 candidates: torch.Tensor | None = None, **options) -> np.ndarray:
    """Filtered realistic ranks of ``answers`` for queries (items[q], props[q], ?).

    ``score_fn(q_slice) -> float [len, V]`` scores every value for a slice of queries;
    ``candidates`` is the optional [P, V] mask of :func:`property_candidates`;
    ``options``: ``higher_is_better``, ``chunk`` (see :func:`rank_queries_under`).
    """
    return rank_queries_under(score_fn, items, props, answers, known, num_values, [candidates], **options)[0]


def rank_queries_under(
    score_fn,
    items: np.ndarray,
    props: np.ndarray,
    answers: np.ndarray,
    known: KnownFacts,
    num_values: int,
    candidate_masks: list[torch.Tensor | None],
    higher_is_better: bool = True,
    chunk: int = 1024,
) -> list[np.ndarray]:
    """:func:`rank_queries` under several candidate masks at once (each None = every value),
    scoring each query once: one rank array per mask."""
    ranks: list[list[torch.Tensor]] = [[] for _ in candidate_masks]
    for start in range(0, len(items), chunk):
        sl = slice(start, start + chunk)
        scores = score_fn(sl).float()
        filtered = known.filter_mask(items[sl], props[sl], answers[sl], num_values)
        answer = torch.from_numpy(np.asarray(answers[sl], dtype=np.int64))
        prop = torch.from_numpy(np.asarray(props[sl], dtype=np.int64))
        for out, candidates in zip(ranks, candidate_masks):
            exclude = filtered if candidates is None else filtered | ~candidates[prop]
            out.append(realistic_ranks(scores, answer, exclude, higher_is_better))
    return [torch.cat(r).numpy() if r else np.empty(0) for r in ranks]
