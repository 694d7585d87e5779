"""Metrics of the evaluation tasks, as plain functions over numpy arrays.

Classification and alignment come from scikit-learn: accuracy, macro-F1 (mean over the
classes that occur in the truth or the predictions, a class's F1 being 0 when it has no
true positive), binary precision, recall, F1 of the positive class (0 when undefined).
Ranking: from 1-based ranks (possibly fractional under ties): MRR, Hits@k; the paper's
Rank@k is Hits@k over the candidate answers (tested against brute force and PyKEEN).
"""
from __future__ import annotations

import numpy as np
from sklearn import metrics as sklearn_metrics


def _labels(y_true, y_pred, what: str) -> tuple[np.ndarray, np.ndarray]:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if len(y_true) == 0:
        raise ValueError(f"{what} of an empty set")
    return y_true, y_pred


def accuracy(y_true, y_pred) -> float:
    return float(sklearn_metrics.accuracy_score(*_labels(y_true, y_pred, "accuracy")))


def macro_f1(y_true, y_pred) -> float:
    """Mean F1 over the classes occurring in the truth or the predictions."""
    return float(sklearn_metrics.f1_score(*_labels(y_true, y_pred, "macro-F1"), average="macro", zero_division=0.0))


def binary_prf(y_true, y_pred) -> dict[str, float]:
    """Precision, recall and F1 of the positive class (labels are 0/1 or bool); 0 when undefined."""
    y_true, y_pred = (np.asarray(y, dtype=bool) for y in _labels(y_true, y_pred, "precision/recall"))
    p, r, f, _ = sklearn_metrics.precision_recall_fscore_support(
        y_true, y_pred, average="binary", pos_label=True, zero_division=0.0
    )
    return {"precision": float(p), "recall": float(r), "f1": float(f)}


def mean_reciprocal_rank(ranks) -> float:
    ranks = np.asarray(ranks, dtype=np.float64)
    if len(ranks) == 0:
        raise ValueError("MRR of an empty set")
    return float(np.mean(1.0 / ranks))


def hits_at(ranks, k: int) -> float:
    ranks = np.asarray(ranks, dtype=np.float64)
    if len(ranks) == 0:
        raise ValueError("Hits@k of an empty set")
    return float(np.mean(ranks <= k))


def ranking_metrics(ranks, ks=(1, 3, 10), prefix: str = "hits") -> dict[str, float]:
    """{"mrr": ..., f"{prefix}@{k}": ...} for each k, plus the mean rank."""
    out = {"mrr": mean_reciprocal_rank(ranks), "mean_rank": float(np.mean(ranks))}
    for k in ks:
        out[f"{prefix}@{k}"] = hits_at(ranks, k)
    return out
