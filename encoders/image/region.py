"""Region image encoder: precomputed detector regions in the original K3M layout
(36 x 2048 features, 5-d box locations, 1601-class distributions), read from a feature
file (encoders.image.region_file) by the data pipeline into K3MBatch.region_*.
MOM target: the detector's class distribution (KL), as in ViLBERT/K3M.
"""
from __future__ import annotations

from torch import nn

from encoders.image.base import ImageEncoder


class RegionImageEncoder(ImageEncoder):
    target_kind = "distribution"

    def __init__(self, image_config):
        super().__init__(image_config.region_feature_dim, image_config.hidden_size, image_config.dropout)
        self.num_regions = image_config.num_regions
        self.location = nn.Linear(5, image_config.hidden_size)

    def raw_features(self, batch):
        if batch.region_features is None or batch.region_locations is None or batch.region_mask is None:
            raise ValueError("image.kind='region' reads K3MBatch.region_features/_locations/_mask, which are None")
        if batch.region_features.shape[1] != self.num_regions:
            raise ValueError(f"expected {self.num_regions} regions (config image.num_regions), got {batch.region_features.shape[1]}")
        features = batch.region_features.to(self.proj.weight.dtype)
        positions = self.location(batch.region_locations.to(self.location.weight.dtype))
        return features, batch.region_mask, positions, batch.region_class_probs
