"""IIFM, the initial-interactive feature fusion module of K3M.

Per modality it fuses the initial (pre-interaction) features E with the interacted
features I1, I2 from the co-attention stacks the modality takes part in:

- ``mean``: (E + I1 + I2) / 3
- ``soft``: gates a_k = sigmoid(W_k [E; I1; I2]), X = W [E*a_E; I1*a_1; I2*a_2]
- ``hard``: the same gate logits, then a one-hot choice among the candidates per token and
  channel: straight-through Gumbel-softmax in training, argmax (no noise) at eval.

With fewer stacks switched on there are fewer candidates; with none, X = E. Keeping E is
what protects an item whose other modality is missing or wrong.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class IIFM(nn.Module):
    def __init__(self, dim: int, num_candidates: int, mode: str = "hard", tau: float = 1.0):
        super().__init__()
        if mode not in ("mean", "soft", "hard"):
            raise ValueError(f"IIFM mode must be mean, soft or hard, got {mode!r}")
        self.num_candidates, self.mode, self.tau = num_candidates, mode, tau
        if mode != "mean" and num_candidates > 1:
            self.gate = nn.Linear(num_candidates * dim, num_candidates * dim)
            self.proj = nn.Linear(num_candidates * dim, dim)

    def forward(self, candidates: list[torch.Tensor]) -> torch.Tensor:
        """candidates: [E, I1, ...], each [B, L, D] -> [B, L, D]."""
        if len(candidates) != self.num_candidates:
            raise ValueError(f"IIFM built for {self.num_candidates} candidates, got {len(candidates)}")
        if self.num_candidates == 1:
            return candidates[0]
        x = torch.stack(candidates, dim=-2)  # [B, L, n, D]
        if self.mode == "mean":
            return x.mean(-2)
        logits = self.gate(x.flatten(-2)).view_as(x)
        if self.mode == "soft":
            gates = torch.sigmoid(logits)
        elif self.training:
            gates = F.gumbel_softmax(logits, tau=self.tau, hard=True, dim=-2)
        else:
            gates = F.one_hot(logits.argmax(-2), self.num_candidates).movedim(-1, -2).to(x.dtype)
        return self.proj((x * gates).flatten(-2))
