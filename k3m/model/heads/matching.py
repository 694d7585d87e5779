"""The matching task (frozen encoders, FashionBERT's image-text matching made contrastive):
c* of an item as it was shown — title or image hidden, swapped for another item's, or
intact — is matched against the item's own clean kept features (k3m.model.nn.kept_features)
among every other item of the batch, InfoNCE in both directions.

Masked modelling asks c* to rebuild each modality on its own; matching asks the whole of c*
to pick its own item out of the batch. That is what a nearest-neighbour search asks of an
item vector, and a corrupted listing learns to sit near its true content, not near the
product whose title or photo it was given.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from k3m.model.heads.base import TaskHead


class Matching(TaskHead):
    tasks = ("matching",)

    def __init__(self, hidden: int, kept_width: int, dim: int, temperature: float):
        super().__init__()
        self.item_projection = nn.Linear(hidden, dim)
        self.target_projection = nn.Linear(kept_width, dim)
        self.temperature = temperature

    def losses(self, ctx) -> dict[str, torch.Tensor]:
        target = ctx.own_kept()
        if target is None or ctx.item_repr.shape[0] < 2:
            return {}
        items = F.normalize(self.item_projection(ctx.item_repr).float(), dim=-1)
        own = F.normalize(self.target_projection(target).float(), dim=-1)
        logits = items @ own.T / self.temperature
        labels = torch.arange(len(logits), device=logits.device)
        return {"matching": (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2}
