"""Metrics of the evaluation tasks, as plain functions over numpy arrays.

Classification: accuracy, macro-F1 (mean over the classes that occur in the truth or the
predictions, a class's F1 being 0 when it has no true positive — sklearn's convention).
Alignment: binary precision, recall, F1 of the positive class (0 when undefined).
Ranking: from 1-based ranks (possibly fractional under ties): MRR, Hits@k; the paper's
Rank@k is Hits@k over the candidate answers.
"""
from __future__ import annotations

import numpy as np


def accuracy(y_true, y_pred) -> float:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if len(y_true) == 0:
        raise ValueError("accuracy of an empty set")
    return float(np.mean(y_true == y_pred))


def macro_f1(y_true, y_pred) -> float:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if len(y_true) == 0:
        raise ValueError("macro-F1 of an empty set")
    scores = []
    for label in np.union1d(y_true, y_pred):
        tp = np.sum((y_true == label) & (y_pred == label))
        fp = np.sum((y_true != label) & (y_pred == label))
        fn = np.sum((y_true == label) & (y_pred != label))
        scores.append(2 * tp / (2 * tp + fp + fn))  # never 0/0: the label occurs somewhere
    return float(np.mean(scores))


def binary_prf(y_true, y_pred) -> dict[str, float]:
    """Precision, recall and F1 of the positive class (labels are 0/1 or bool)."""
    y_true, y_pred = np.asarray(y_true, dtype=bool), np.asarray(y_pred, dtype=bool)
    tp = int(np.sum(y_true & y_pred))
    fp = int(np.sum(~y_true & y_pred))
    fn = int(np.sum(y_true & ~y_pred))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


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
