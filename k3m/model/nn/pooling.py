"""Pooling over real tokens only (the original's mean included padding)."""
from __future__ import annotations

import torch


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """x [B, L, H], bool mask [B, L] -> [B, H]; a row without real tokens gives zeros."""
    weights = mask.to(x.dtype).unsqueeze(-1)
    return (x * weights).sum(1) / weights.sum(1).clamp_min(1)


def presence_mean(vectors: list[torch.Tensor], present: list[torch.Tensor]) -> torch.Tensor:
    """Mean of per-modality vectors [B, H] over the modalities present for each item.

    This is the item centre c: an item with a missing title is the mean of its image and
    knowledge vectors, not of three vectors one of which is padding.
    """
    stacked = torch.stack(vectors)  # [M, B, H]
    weights = torch.stack(present).to(stacked.dtype).unsqueeze(-1)  # [M, B, 1]
    return (stacked * weights).sum(0) / weights.sum(0).clamp_min(1)
