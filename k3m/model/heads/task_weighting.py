"""How the task losses become one: fixed weights from LossConfig, optionally adaptive.

Adaptive weighting (FashionBERT balances its tasks adaptively) is implemented as learned
homoscedastic-uncertainty weights: total = sum_k w_k (exp(-s_k) L_k + s_k), s_k learned,
so a task whose loss stays large is down-weighted instead of dominating.
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn


# tasks added after the first checkpoints: weighed (and given an adaptive weight) only when
# switched on, so a checkpoint made before them loads with the parameters it has
OPTIONAL_TASKS = ("matching", "consistency")


def task_names(loss_config) -> tuple[str, ...]:
    """The tasks a LossConfig weighs: its fields but ``adaptive``, in their order."""
    return tuple(f.name for f in dataclasses.fields(loss_config)
                 if f.name != "adaptive" and (f.name not in OPTIONAL_TASKS or getattr(loss_config, f.name) > 0))


class TaskWeighting(nn.Module):
    def __init__(self, loss_config):
        super().__init__()
        self.weights = {task: float(getattr(loss_config, task)) for task in task_names(loss_config)}
        self.adaptive = bool(loss_config.adaptive)
        if self.adaptive:
            self.log_vars = nn.ParameterDict({task: nn.Parameter(torch.zeros(())) for task in self.weights})

    def forward(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        total = None
        for task, loss in losses.items():
            term = loss
            if self.adaptive:
                s = self.log_vars[task]
                term = torch.exp(-s) * loss + s
            term = self.weights[task] * term
            total = term if total is None else total + term
        return total
