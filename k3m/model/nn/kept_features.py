"""KeptFeatures: the item vector's kept path, a fixed map of the pooled frozen features.

Per modality (title, image, knowledge), what the frozen encoder gave the item, pooled: the
feature is scaled to unit length, centred on the train items' mean and projected onto the
top principal components of the train items (``fit``). The map is linear and fixed (buffers,
saved with the model), so whatever the frozen encoders carried survives into the item
vector, up to the variance the components leave out; c* (learned) sits beside it and adds
what co-attention, IIFM and the GAT infer (a missing or wrong modality). Unit length first:
a block's scale says nothing about the item, and cosine search weighs the blocks alike.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

BLOCKS = ("title", "image", "knowledge")


class KeptFeatures(nn.Module):
    def __init__(self, dims: dict[str, int], widths: dict[str, int]):
        """``dims``: components kept per modality (0 = no block); ``widths``: each frozen
        feature's width."""
        super().__init__()
        self.dims = {name: int(dims.get(name, 0)) for name in BLOCKS if dims.get(name, 0) > 0}
        for name, k in self.dims.items():
            self.register_buffer(f"{name}_mean", torch.zeros(widths[name]))
            self.register_buffer(f"{name}_components", torch.zeros(k, widths[name]))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    @property
    def width(self) -> int:
        return sum(self.dims.values())

    @torch.no_grad()
    def fit(self, statistics: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
        """``statistics[name] = (mean [F], covariance [F, F])`` of the unit-length features of
        the train items that have the modality (a modality no train item has is left out: its
        block stays zeros): the components are the covariance's top
        eigenvectors (signs fixed so each one's largest entry is positive: a refit of the same
        data gives the same map)."""
        for name, k in self.dims.items():
            if name not in statistics:  # no train item has the modality: the block stays zeros
                continue
            mean, covariance = statistics[name]
            values, vectors = torch.linalg.eigh(covariance.double())
            top = vectors[:, torch.argsort(values, descending=True)[:k]].T  # [k, F]
            sign = torch.sign(top.gather(1, top.abs().argmax(1, keepdim=True)))
            getattr(self, f"{name}_mean").copy_(mean)
            getattr(self, f"{name}_components").copy_((top * sign).to(torch.float32))
        self.fitted.fill_(True)

    def block(self, name: str, features: torch.Tensor) -> torch.Tensor:
        """Raw pooled features [B, F] -> the kept block [B, k] (zeros for an all-zero row)."""
        present = features.abs().sum(-1, keepdim=True) > 0
        unit = F.normalize(features.float(), dim=-1)
        projected = (unit - getattr(self, f"{name}_mean")) @ getattr(self, f"{name}_components").T
        return projected * present

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """name -> raw pooled features [B, F] (zeros where absent) -> name -> block [B, k]."""
        return {name: self.block(name, features[name]) for name in self.dims}
