"""What every downstream task gives the runner.

Two kinds of task:

- :class:`HeadTask` — a small head is trained on item vectors c* of *fine-tuning* examples
  and scored on *test* examples: item classification, product alignment, attribute QA.
  An example references ``k`` items (1, or 2 for a pair); the runner hands the head the
  examples' item vectors ``[M, k, H]``, either precomputed by the frozen model (probe mode)
  or computed with gradients (fine-tune mode). Tasks never see the model itself.
- :class:`ScoringTask` — no training: the pretrained model's own scorer (LPM) ranks
  answers directly (zero-shot QA with LPM, link prediction).
- a task with ``scores_vectors`` — no training, no LPM: the item vectors themselves are
  scored (nearest neighbours), for every representation alike.

Item rows are chosen from the *pools* (:class:`Pools`): one sample of train-split items for
fine-tuning and one of test-split items for testing, shared by every task so each
corrupted condition is encoded once.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class Pools:
    finetune: np.ndarray  # int64 build rows (train split)
    test: np.ndarray  # int64 build rows (test split)


@dataclass
class Examples:
    rows: np.ndarray  # int64 [M, k] build rows each example is about
    target: np.ndarray  # int64 [M] class / answer id, or 0/1
    extra: dict[str, np.ndarray] = field(default_factory=dict)  # e.g. the asked property

    def __len__(self) -> int:
        return len(self.target)

    def subset(self, index) -> "Examples":
        return Examples(self.rows[index], self.target[index], {k: v[index] for k, v in self.extra.items()})


class Task:
    """What every task declares about itself; the runner dispatches on these facts, never on
    a task's name. Subclasses register themselves in :mod:`k3m.evaluation.tasks`."""

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""  # the report's heading
    metrics: ClassVar[tuple[str, ...]] = ()
    note: ClassVar[str] = ""  # what a reader of the task's table needs to know
    trains_head: ClassVar[bool] = False  # a head is fitted on item vectors (HeadTask)
    needs_lpm: ClassVar[bool] = False  # scored by the model's own LPM: only models pretrained with knowledge
    clean_only: ClassVar[bool] = False  # asked on clean inputs only, not under the corruption grid
    kg_anchor: ClassVar[bool] = False  # a KG-embedding model (TransE) trained on the train triples answers it too
    scores_vectors: ClassVar[bool] = False  # scored on the item vectors themselves (no head, no LPM)
    # timing lines that computing the task's cells writes (dropped with its cells by --redo)
    timing_parts: ClassVar[tuple[str, ...]] = ("encode",)

    @classmethod
    def from_config(cls, config) -> "Task":
        """A fresh task sized by the evaluation config."""
        return cls()

    def prepare(self, build, pools: Pools, seed: int) -> None:
        raise NotImplementedError

    def sizes(self) -> dict[str, int]:
        raise NotImplementedError


class HeadTask(Task):
    """A task learnt by a head over item vectors."""

    trains_head: ClassVar[bool] = True

    def prepare(self, build, pools: Pools, seed: int) -> None:
        """Choose the fine-tuning and test examples (``self.train``, ``self.test``)."""
        raise NotImplementedError

    train: Examples
    test: Examples

    def make_head(self, hidden: int) -> nn.Module:
        raise NotImplementedError

    def logits(self, head: nn.Module, vectors: torch.Tensor, examples: Examples):
        """Head output for ``vectors`` [M, k, H] of ``examples`` (what loss/evaluate take)."""
        return head(vectors)

    def loss(self, logits, examples: Examples) -> torch.Tensor:
        return nn.functional.cross_entropy(logits, torch.from_numpy(examples.target).to(logits.device))

    def measure(self, logits, examples: Examples) -> dict[str, float]:
        """The task's metrics of head outputs ``logits`` on ``examples``."""
        raise NotImplementedError

    def majority_baseline(self) -> dict[str, float]:
        """The task's metrics for the guess that reads no input (the most frequent answer
        among the fine-tuning examples, or "always aligned")."""
        raise NotImplementedError

    # -- a linear form: tasks whose head is one logistic regression on features of the
    # example's item vectors (the probe then fits scikit-learn's, tuned; probe.py) ----------
    has_linear_form: ClassVar[bool] = False
    class_weight: ClassVar[str | None] = None  # LogisticRegression's class_weight

    def linear_features(self, vectors: torch.Tensor) -> torch.Tensor:
        """[M, D] features of the examples' (standardised) item vectors [M, k, H]."""
        raise NotImplementedError

    def logits_from_decision(self, decision: np.ndarray, classes: np.ndarray):
        """What :meth:`measure` takes, from a fitted logistic regression's
        ``decision_function`` over the classes it saw (``classes``)."""
        raise NotImplementedError

    def validation_score(self, logits, examples: Examples) -> float:
        """Higher is better: what the probe's regularisation is chosen by (the first metric)."""
        return float(self.measure(logits, examples)[self.metrics[0]])

    def sizes(self) -> dict[str, int]:
        return {"n_train": len(self.train), "n_test": len(self.test)}


class ScoringTask(Task):
    """A task scored by the model's own LPM scorer, without a trained head."""

    needs_lpm: ClassVar[bool] = True

    @property
    def rows(self) -> np.ndarray:
        """The items whose vectors the scorer needs (sorted build rows)."""
        raise NotImplementedError

    def score(self, value_scores) -> dict[str, float]:
        """``value_scores(items, props) -> float [Q, V]``, higher = more plausible."""
        raise NotImplementedError
