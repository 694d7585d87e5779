"""Cached image features as visual tokens (frozen encoders): the EfficientNet grid the
feature cache holds for each image (``k3m.model.inputs.FeatureInputs.image`` [B, g*g, 1280]) is
projected to the image stream's width, with learned grid positions and the global token
(encoders.image.base). The backbone is not part of the model. Masked modelling happens at
the level of the whole image (k3m.model.heads.reconstruction), never per cell: a CNN cell's
feature sees its neighbours, so a masked cell would leak through them."""
from __future__ import annotations

import torch
from torch import nn

from encoders.image.base import ImageEncoder

GRID_FEATURES = 1280


class CachedGridEncoder(ImageEncoder):
    feature_width = GRID_FEATURES

    def __init__(self, image_config):
        super().__init__(GRID_FEATURES, image_config.hidden_size, image_config.dropout)
        self.num_tokens = image_config.cached_grid ** 2  # the cache's grid, pooled to at most feature_grid a side
        self.positions = nn.Parameter(torch.zeros(1, self.num_tokens, image_config.hidden_size))
        nn.init.normal_(self.positions, std=0.02)

    def raw_features(self, images):
        features = images
        if not isinstance(features, torch.Tensor):
            raise ValueError("frozen encoders read the cached image grid (the feature cache), which the batch lacks")
        if features.shape[1] != self.num_tokens:
            raise ValueError(f"cached grids have {features.shape[1]} cells, the model reads {self.num_tokens} "
                             "(image.image_size differs from the cache's)")
        features = features.to(self.proj.weight.dtype)
        real = torch.ones(features.shape[:2], dtype=torch.bool, device=features.device)
        return features, real, self.positions, None
