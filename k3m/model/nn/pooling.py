"""The item centre: the mean over the modalities an item has (token pooling itself is
encoders.pooling.masked_mean)."""
from __future__ import annotations

import torch


def presence_mean(vectors: list[torch.Tensor], present: list[torch.Tensor]) -> torch.Tensor:
    """Mean of per-modality vectors [B, H] over the modalities present for each item.

    This is the item centre c: an item with a missing title is the mean of its image and
    knowledge vectors, not of three vectors one of which is padding.
    """
    stacked = torch.stack(vectors)  # [M, B, H]
    weights = torch.stack(present).to(stacked.dtype).unsqueeze(-1)  # [M, B, 1]
    return (stacked * weights).sum(0) / weights.sum(0).clamp_min(1)
