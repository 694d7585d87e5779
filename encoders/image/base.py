"""The one interface behind every image encoder.

An encoder turns a batch's images into ``num_visual_tokens`` raw features [B, N, F]
(flattened pixel patches, CNN grid cells or detector regions), replaces the MOM-masked ones
by a learned mask feature, projects them to the image stream width, adds positions and
prepends one global token. Presence is explicit: an absent image has an all-False token
mask (global token included) and its MOM targets are masked out too.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from encoders.pooling import masked_mean


@dataclass
class VisualTokens:
    tokens: torch.Tensor  # [B, 1 + N, Hv], global token first
    mask: torch.Tensor  # bool [B, 1 + N], True = real token
    target: Optional[torch.Tensor]  # MOM target [B, N, F] (features) or [B, N, C] (class distribution)
    target_mask: torch.Tensor  # bool [B, N]: masked for MOM and real


class ImageEncoder(nn.Module):
    """Subclasses implement ``raw_features``; everything else is shared."""

    target_kind = "regression"  # or "distribution" (KL to a class distribution)

    def __init__(self, feature_dim: int, hidden: int, dropout: float):
        super().__init__()
        self.feature_dim = feature_dim
        self.mask_feature = nn.Parameter(torch.zeros(feature_dim))
        self.proj = nn.Linear(feature_dim, hidden)
        self.global_token = nn.Parameter(torch.zeros(1, 1, hidden))
        self.norm = nn.LayerNorm(hidden, eps=1e-12)
        self.dropout = nn.Dropout(dropout)
        nn.init.normal_(self.global_token, std=0.02)

    def raw_features(self, images) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``images``: the batch's images as the encoder reads them (``.pixels`` uint8
        [B, 3, H, W]; detector regions; or cached grid features [B, N, F]) ->
        (features [B, N, F], real bool [B, N], positions [B or 1, N, Hv], MOM target or None)."""
        raise NotImplementedError

    def forward(self, images, present: torch.Tensor, mom_mask: Optional[torch.Tensor] = None) -> VisualTokens:
        features, real, positions, target = self.raw_features(images)
        real = real & present.unsqueeze(-1)
        if mom_mask is None:
            target_mask = torch.zeros_like(real)
        else:
            target_mask = mom_mask & real
            features = torch.where(target_mask.unsqueeze(-1), self.mask_feature.to(features.dtype), features)
        x = self.proj(features) + positions
        pooled = masked_mean(x, real).unsqueeze(1)
        tokens = torch.cat([self.global_token.expand(x.shape[0], -1, -1) + pooled, x], dim=1)
        mask = torch.cat([present.unsqueeze(-1), real], dim=1)
        target = target.detach() if target is not None else None
        return VisualTokens(self.dropout(self.norm(tokens)), mask, target, target_mask)


def check_pixels(pixels: Optional[torch.Tensor], image_size: int) -> torch.Tensor:
    if pixels is None:
        raise ValueError("this image encoder reads pixels (k3m.model.inputs.PixelImages), which the batch lacks")
    if pixels.dim() != 4 or pixels.shape[1] != 3 or pixels.shape[-2:] != (image_size, image_size):
        raise ValueError(f"pixels must be [B, 3, {image_size}, {image_size}] (config image.image_size), got {tuple(pixels.shape)}")
    return pixels
