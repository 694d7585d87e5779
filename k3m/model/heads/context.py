"""What a task head reads: the batch, the stem's streams, the core's fused streams and c*,
and the property / value vectors (computed once per forward pass, by the first head that
asks, and shared by the heads that compare against them)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch


@dataclass
class HeadContext:
    batch: object  # k3m.model.batch.K3MBatch
    stem: object  # the model's stem (k3m.model.stems)
    streams: dict  # name -> k3m.model.stems.Stream
    visual: object  # encoders.image.VisualTokens or None
    fused: dict[str, torch.Tensor]  # name -> IIFM output
    item_repr: torch.Tensor  # c* [B, H]
    kept: Optional[object] = None  # the model's KeptFeatures (frozen encoders with a kept path)
    shown: Optional[dict] = None  # frozen encoders: name -> (pooled shown features [B, F], present [B])
    own_logits: Optional[dict] = None  # the consistency head's logits (name -> [B]), when it exists
    _vocabulary: Optional[tuple[torch.Tensor, torch.Tensor]] = field(default=None, repr=False)

    @property
    def targets(self):
        return self.batch.targets

    def vocabulary(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(property vectors [Up, H], value vectors [U, H]) of ``batch.lpm``'s ids."""
        if self._vocabulary is None:
            self._vocabulary = self.stem.vocabulary(self.batch)
        return self._vocabulary

    def own_kept(self) -> Optional[torch.Tensor]:
        """[B, K] the kept blocks of each item's own clean features (whatever it was shown),
        each block unit length; None without a kept path or targets."""
        targets = self.targets
        if self.kept is None or targets is None:
            return None
        own = {name: getattr(targets, name, None) for name in self.kept.dims}
        if any(features is None for features in own.values()):
            return None
        blocks = self.kept(own)
        return torch.cat([torch.nn.functional.normalize(blocks[name], dim=-1) for name in self.kept.dims], dim=-1)
