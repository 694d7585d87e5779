"""Metrics against hand-computed cases (explicit small arrays)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from k3m.evaluation.metrics import accuracy, binary_prf, hits_at, macro_f1, mean_reciprocal_rank, ranking_metrics
from k3m.evaluation.ranking import realistic_ranks


def test_accuracy():
    assert accuracy([0, 1, 2, 2], [0, 2, 2, 2]) == pytest.approx(0.75)


def test_macro_f1_by_hand():
    # class 0: tp 1 fp 1 fn 1 -> 0.5; class 1: tp 2 fp 1 fn 0 -> 0.8; class 2: tp 0 -> 0
    y_true, y_pred = [0, 0, 1, 1, 2], [0, 1, 1, 1, 0]
    assert macro_f1(y_true, y_pred) == pytest.approx((0.5 + 0.8 + 0.0) / 3)


def test_macro_f1_counts_classes_only_predicted():
    # class 3 never occurs in the truth but is predicted once: it counts, with F1 0
    assert macro_f1([1, 1], [1, 3]) == pytest.approx((2 / 3 + 0.0) / 2)


def test_binary_precision_recall_f1():
    out = binary_prf([1, 1, 0, 0, 1], [1, 0, 1, 0, 1])  # tp 2, fp 1, fn 1
    assert out == pytest.approx({"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3})
    assert binary_prf([1, 0], [0, 0]) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    assert binary_prf([1, 0, 1, 1], [1, 1, 1, 1]) == pytest.approx({"precision": 0.75, "recall": 1.0, "f1": 6 / 7})


def test_rank_metrics():
    ranks = [1, 2, 4, 10, 11]
    assert mean_reciprocal_rank(ranks) == pytest.approx((1 + 1 / 2 + 1 / 4 + 1 / 10 + 1 / 11) / 5)
    assert [hits_at(ranks, k) for k in (1, 3, 10)] == pytest.approx([0.2, 0.4, 0.8])
    out = ranking_metrics([1.5, 3.0], ks=(1, 3))
    assert out == pytest.approx({"mrr": (2 / 3 + 1 / 3) / 2, "mean_rank": 2.25, "hits@1": 0.0, "hits@3": 1.0})


def test_realistic_ranks_with_ties_and_exclusions():
    scores = torch.tensor([[0.5, 0.9, 0.5, 0.1, 0.5]] * 3)
    answers = torch.tensor([0, 3, 0])
    exclude = torch.zeros(3, 5, dtype=torch.bool)
    exclude[2, 2] = True
    ranks = realistic_ranks(scores, answers, exclude).tolist()
    # row 0: one better (0.9), two ties -> 1 + 1 + 2/2; row 1: all four better -> 5;
    # row 2: as row 0 with one tie excluded -> 1 + 1 + 1/2
    assert ranks == pytest.approx([3.0, 5.0, 2.5])
    # distances (lower = better): the 0.1 answer is first
    assert realistic_ranks(scores[1:2], answers[1:2], higher_is_better=False).tolist() == [1.0]
    # a constant scorer gets the rank of chance, never rank 1
    assert realistic_ranks(torch.zeros(1, 5), torch.tensor([2])).tolist() == [3.0]


def test_an_excluded_answer_is_an_error():
    exclude = torch.tensor([[True, False]])
    with pytest.raises(ValueError):
        realistic_ranks(torch.zeros(1, 2), torch.tensor([0]), exclude)


def test_empty_inputs_raise():
    for fn in (lambda: accuracy([], []), lambda: macro_f1([], []), lambda: mean_reciprocal_rank([]), lambda: hits_at(np.array([]), 1)):
        with pytest.raises(ValueError):
            fn()
