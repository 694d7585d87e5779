"""Region image encoder: precomputed detector regions in the original K3M layout
(36 x 2048 features, 5-d box locations, 1601-class distributions), read from a feature
file (encoders.image.region_file) by the data pipeline into the batch's region images
(``features``, ``locations``, ``class_probs``, ``mask``: k3m.model.inputs.RegionImages).
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

    def raw_features(self, images):
        if getattr(images, "features", None) is None or not hasattr(images, "locations"):
            raise ValueError("image.kind='region' reads detector regions (k3m.model.inputs.RegionImages), which the batch lacks")
        if images.features.shape[1] != self.num_regions:
            raise ValueError(f"expected {self.num_regions} regions (config image.num_regions), got {images.features.shape[1]}")
        features = images.features.to(self.proj.weight.dtype)
        positions = self.location(images.locations.to(self.location.weight.dtype))
        return features, images.mask, positions, images.class_probs
