"""Probe mode: fit a task's head on frozen item vectors, the same way for every model.

The vectors of the fine-tuning pool are standardised (per-dimension mean and std of that
pool, frozen into the probe so test vectors get the same transform). Then, by task:

- **logistic regression** (``kind: logistic``; ``auto`` picks it for every task with a
  linear form, ``HeadTask.linear_features``: classification, alignment): scikit-learn's
  ``LogisticRegression`` fitted to convergence (lbfgs), its inverse regularisation ``C``
  chosen on a validation split of the fine-tuning examples drawn by whole product groups
  (near-duplicate listings never sit on both sides), then refitted on all of them. This is
  what a user gets in five lines of scikit-learn, tuned; no representation is handicapped
  by an undertrained head.
- **the task's own head** (``kind: head``; ``auto`` for attribute QA, whose per-property
  softmax over a property's values is not one logistic regression): trained with Adam on
  mini-batches for a fixed number of epochs, no early stopping on test data.
"""
from __future__ import annotations

import warnings
import zlib
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from k3m.config import ConfigError

from k3m.evaluation.tasks.base import Examples, HeadTask

PROBE_KINDS = ("auto", "logistic", "head")


@dataclass
class ProbeConfig:
    kind: str = "auto"  # auto | logistic | head (see the module docstring)
    # logistic regression: C candidates (on standardised features), the validation share
    c_grid: list[float] = field(default_factory=lambda: [0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0])  # tried ascending
    validation_fraction: float = 0.2
    max_iter: int = 3000
    # the task's own head (Adam)
    epochs: int = 60
    batch_size: int = 512
    learning_rate: float = 1e-2
    weight_decay: float = 1e-4

    def __post_init__(self):
        if self.kind not in PROBE_KINDS:
            raise ConfigError(f"probe.kind must be one of {PROBE_KINDS}, got {self.kind!r}")
        if not self.c_grid or any(c <= 0 for c in self.c_grid):
            raise ConfigError("probe.c_grid must list positive values")
        if not 0.0 < self.validation_fraction < 1.0:
            raise ConfigError("probe.validation_fraction must lie in (0, 1)")


class Standardize(nn.Module):
    def __init__(self, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std.clamp(min=1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def gather(vectors: torch.Tensor, rows_of_vectors: np.ndarray, examples: Examples) -> torch.Tensor:
    """[M, k, H] item vectors of the examples, from vectors of ``rows_of_vectors`` (sorted)."""
    position = np.searchsorted(rows_of_vectors, examples.rows)
    if not np.array_equal(rows_of_vectors[np.clip(position, 0, len(rows_of_vectors) - 1)], examples.rows):
        raise KeyError("an example refers to an item that was not encoded")
    return vectors[torch.from_numpy(position)]


def uses_logistic(task: HeadTask, config: ProbeConfig) -> bool:
    linear = task.has_linear_form
    if config.kind == "logistic" and not linear:
        raise ConfigError(f"probe.kind logistic: task {task.name} has no linear form (use auto or head)")
    return linear and config.kind in ("auto", "logistic")


@dataclass
class Probe:
    """A fitted probe: ``measure(task, test_vectors)`` gives the task's metrics."""

    scale: Standardize
    head: nn.Module | None = None  # the task's own head
    model: object = None  # a fitted sklearn pipeline (logistic regression)
    classes: np.ndarray | None = None
    c: float | None = None  # the chosen C
    converged: bool = True

    @torch.no_grad()
    def logits(self, task: HeadTask, vectors: torch.Tensor, examples: Examples):
        x = self.scale(vectors)
        if self.head is not None:
            return task.logits(self.head, x, examples)
        features = task.linear_features(x).numpy()
        return task.logits_from_decision(self.model.decision_function(features), self.classes)

    def measure(self, task: HeadTask, vectors: torch.Tensor) -> dict[str, float]:
        return task.measure(self.logits(task, vectors, task.test), task.test)

    def describe(self) -> dict:
        """What a result line records of the fit."""
        if self.head is not None:
            return {"kind": "head"}
        return {"kind": "logistic", "C": self.c, "converged": self.converged}


def train_probe(task: HeadTask, train_vectors: torch.Tensor, pool_vectors: torch.Tensor, config: ProbeConfig,
                seed: int, groups: np.ndarray | None = None) -> Probe:
    """The probe of ``task`` fitted on ``train_vectors`` [M, k, H] of ``task.train``;
    ``pool_vectors`` [N, H] set the scaling; ``groups`` [M] (the product of each example's
    first item) keep a product on one side of the validation split."""
    scale = Standardize(pool_vectors.mean(0), pool_vectors.std(0))
    x = scale(train_vectors)
    if not uses_logistic(task, config):
        return Probe(scale, head=_train_head(task, x, config, seed))
    return _fit_logistic(task, scale, task.linear_features(x).numpy(), task.train.target, config, seed, groups)


def _fit_logistic(task, scale, features, target, config: ProbeConfig, seed: int, groups) -> Probe:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(features)
    x = scaler.transform(features)
    converged = True

    def fit(model, rows):
        nonlocal converged
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            model.fit(x[rows], target[rows])
        converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
        return model

    fit_rows, valid_rows = _validation_split(target, groups, config.validation_fraction, seed)
    grid = sorted(config.c_grid)
    best_c, start = grid[0], None
    if len(valid_rows) and len(np.unique(target[fit_rows])) > 1 and len(grid) > 1:
        # the path from the strongest regularisation up, each fit starting where the last
        # one ended (scikit-learn's warm start): the same optimum, a fraction of the iterations
        model = LogisticRegression(max_iter=config.max_iter, class_weight=task.class_weight, warm_start=True)
        scores = []
        for c in grid:
            fit(model.set_params(C=c), fit_rows)
            decision = model.decision_function(x[valid_rows])
            scores.append(task.validation_score(task.logits_from_decision(decision, model.classes_), task.train.subset(valid_rows)))
        best_c = grid[int(np.argmax(scores))]  # the strongest regularisation among ties
    model = fit(LogisticRegression(C=best_c, max_iter=config.max_iter, class_weight=task.class_weight), np.arange(len(target)))
    pipeline = Pipeline([("scale", scaler), ("logistic", model)])
    return Probe(scale, model=pipeline, classes=model.classes_, c=float(best_c), converged=converged)


def _validation_split(target: np.ndarray, groups: np.ndarray | None, fraction: float, seed: int):
    """(fit rows, validation rows): whole groups (or single examples without groups) drawn
    at random; deterministic in the seed."""
    n = len(target)
    keys = np.arange(n) if groups is None else np.asarray(groups)
    unique, inverse = np.unique(keys, return_inverse=True)
    rng = np.random.default_rng([int(seed), zlib.crc32(b"probe-validation")])
    chosen = rng.random(len(unique)) < fraction
    valid = chosen[inverse]
    return np.flatnonzero(~valid), np.flatnonzero(valid)


def _train_head(task: HeadTask, x: torch.Tensor, config: ProbeConfig, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    head = task.make_head(x.shape[-1])
    optimizer = torch.optim.Adam(head.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(config.epochs):
        for idx in torch.randperm(len(x), generator=generator).split(config.batch_size):
            optimizer.zero_grad()
            sub = task.train.subset(idx.numpy())
            task.loss(task.logits(head, x[idx], sub), sub).backward()
            optimizer.step()
    return head.eval()
