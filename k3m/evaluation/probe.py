"""Probe mode: train a task's head on frozen item vectors.

The vectors of the fine-tuning pool are standardised (per-dimension mean and std of that
pool, frozen into the head so test vectors get the same transform), then the head is
trained with Adam on mini-batches for a fixed number of epochs — no early stopping on test
data, and the same budget for every model.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from k3m.evaluation.tasks.base import Examples, HeadTask


@dataclass
class ProbeConfig:
    epochs: int = 60
    batch_size: int = 512
    learning_rate: float = 1e-2
    weight_decay: float = 1e-4


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


def train_probe(
    task: HeadTask,
    train_vectors: torch.Tensor,
    pool_vectors: torch.Tensor,
    config: ProbeConfig,
    seed: int,
) -> tuple[Standardize, nn.Module]:
    """(scaling, head) trained on ``train_vectors`` [M, k, H] of ``task.train``;
    ``pool_vectors`` [N, H] set the scaling."""
    torch.manual_seed(seed)
    scale = Standardize(pool_vectors.mean(0), pool_vectors.std(0))
    head = task.make_head(pool_vectors.shape[1])
    optimizer = torch.optim.Adam(head.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    x = scale(train_vectors)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(config.epochs):
        for idx in torch.randperm(len(x), generator=generator).split(config.batch_size):
            optimizer.zero_grad()
            sub = task.train.subset(idx.numpy())
            task.loss(task.logits(head, x[idx], sub), sub).backward()
            optimizer.step()
    return scale, head.eval()


@torch.no_grad()
def measure_probe(task: HeadTask, probe: tuple[Standardize, nn.Module], test_vectors: torch.Tensor) -> dict[str, float]:
    scale, head = probe
    return task.measure(task.logits(head, scale(test_vectors), task.test), task.test)
