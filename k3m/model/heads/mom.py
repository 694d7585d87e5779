"""Masked object/patch modelling: predict what a masked visual token hid.

- patches / CNN cells: regression to the token's input feature (mean squared error);
- detector regions: KL(detector class distribution || predicted distribution).

The mean runs over masked real tokens; a batch with none masked gives 0, not 0/0 (the
original divided by zero there).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from k3m.model.heads.base import TaskHead


class MOMHead(nn.Module):
    def __init__(self, hidden: int, target_dim: int, kind: str):
        super().__init__()
        if kind not in ("regression", "distribution"):
            raise ValueError(f"MOM target kind must be regression or distribution, got {kind!r}")
        self.kind = kind
        self.net = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.LayerNorm(hidden, eps=1e-12), nn.Linear(hidden, target_dim))

    def loss(self, tokens: torch.Tensor, target: torch.Tensor, target_mask: torch.Tensor) -> torch.Tensor:
        """tokens [B, N, Hv] (visual tokens without the global one), target [B, N, F]."""
        pred = self.net(tokens).float()
        target = target.float()
        if self.kind == "regression":
            per_token = (pred - target).pow(2).mean(-1)
        else:
            per_token = (torch.xlogy(target, target) - target * F.log_softmax(pred, dim=-1)).sum(-1)
        weights = target_mask.to(per_token.dtype)
        return (per_token * weights).sum() / weights.sum().clamp_min(1)


class MaskedVisualTokens(MOMHead, TaskHead):
    """Task head ``mom`` of trainable encoders: the masked visual tokens' features (or the
    detector's class distribution) from the fused image stream."""

    tasks = ("mom",)

    def losses(self, ctx) -> dict[str, torch.Tensor]:
        visual = ctx.visual
        if ctx.targets is None or visual is None or visual.target is None:
            return {}
        return {"mom": self.loss(ctx.fused["image"][:, 1:], visual.target, visual.target_mask)}
