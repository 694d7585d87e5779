"""Patch image encoder (FashionBERT/ViLT style, the default): the image cut into a fixed
grid of patches, each flattened and linearly projected, plus learned grid positions;
trained from scratch. MOM target: the patch's own normalised pixels (regression).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from encoders.image.base import ImageEncoder, check_pixels


class PatchImageEncoder(ImageEncoder):
    def __init__(self, image_config):
        patch = image_config.patch_size
        super().__init__(3 * patch * patch, image_config.hidden_size, image_config.dropout)
        self.image_size, self.patch_size = image_config.image_size, patch
        self.num_tokens = image_config.num_visual_tokens
        self.positions = nn.Parameter(torch.zeros(1, self.num_tokens, image_config.hidden_size))
        nn.init.normal_(self.positions, std=0.02)

    def raw_features(self, images):
        pixels = check_pixels(getattr(images, "pixels", None), self.image_size)
        x = pixels.to(self.proj.weight.dtype) / 127.5 - 1.0  # [-1, 1]
        patches = F.unfold(x, kernel_size=self.patch_size, stride=self.patch_size).transpose(1, 2)  # [B, N, 3*p*p]
        real = torch.ones(patches.shape[:2], dtype=torch.bool, device=patches.device)
        return patches, real, self.positions, patches
