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

    def forward(self, candidates: list[torch.Tensor], mask: torch.Tensor | None = None) -> torch.Tensor:
        """candidates: [E, I1, ...], each [B, L, D] -> [B, L, D]. With ``mask`` (bool [B, L],
        True = real token) on CPU only real tokens are fused (the gates are per token, so
        padding would only cost time; on CUDA the packing's host sync would cost more) and
        padded positions come out zero."""
        if len(candidates) != self.num_candidates:
            raise ValueError(f"IIFM built for {self.num_candidates} candidates, got {len(candidates)}")
        if self.num_candidates == 1:
            return candidates[0]
        if self.mode == "mean":
            return torch.stack(candidates).mean(0)
        if mask is not None and mask.device.type == "cpu":
            real = mask.reshape(-1).nonzero().squeeze(-1)
            fused = self._fuse([c.reshape(-1, c.shape[-1]).index_select(0, real) for c in candidates])
            out = fused.new_zeros(mask.numel(), fused.shape[-1]).index_copy(0, real, fused)
            return out.view(*mask.shape, -1)
        return self._fuse(candidates)

    def _fuse(self, candidates: list[torch.Tensor]) -> torch.Tensor:
        # Candidates side by side on the channel axis ([E | I1 | I2], as W sees them): every
        # per-candidate step below is elementwise, because reductions over a small middle
        # axis (argmax/softmax over n) are ~10x slower on CPU.
        logits = self.gate(torch.cat(candidates, dim=-1)).chunk(self.num_candidates, dim=-1)
        if self.mode == "soft":
            gates = [torch.sigmoid(logit) for logit in logits]
        elif self.training:
            gates = _straight_through_gumbel(logits, self.tau)
        else:
            gates = _one_hot_argmax(logits)
        return self.proj(torch.cat([x * g for x, g in zip(candidates, gates)], dim=-1))


def _one_hot_argmax(scores: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
    """One-hot of the best candidate per element (first one on ties), as float gates."""
    best, choice = scores[0], torch.zeros_like(scores[0], dtype=torch.long)
    for k, score in enumerate(scores[1:], start=1):
        better = score > best
        best = torch.where(better, score, best)
        choice = torch.where(better, k, choice)
    return [(choice == k).to(scores[0].dtype) for k in range(len(scores))]


def _straight_through_gumbel(logits: tuple[torch.Tensor, ...], tau: float) -> list[torch.Tensor]:
    """Hard one-hot forward, Gumbel-softmax gradient backward (F.gumbel_softmax(hard=True))."""
    noisy = [(logit - torch.empty_like(logit).exponential_().log()) / tau for logit in logits]
    top = noisy[0]
    for z in noisy[1:]:
        top = torch.maximum(top, z)
    exp = [torch.exp(z - top) for z in noisy]
    total = sum(exp)
    soft = [e / total for e in exp]
    hard = _one_hot_argmax(tuple(s.detach() for s in soft))
    return [h - s.detach() + s for h, s in zip(hard, soft)]
