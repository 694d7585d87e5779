"""Masked pair modelling (frozen encoders): a pair taken out of an item's knowledge stream
and graph; from c* and the pair's property, predict its value among the batch's candidate
values (the positives and the LPM negatives: a sampled softmax). MLM on knowledge values,
at the level of whole pairs, where the cache cannot leak the answer.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from k3m.model.heads.base import TaskHead
from k3m.model.heads.lpm import rows_of


class ValuePredictionHead(nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        self.query = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.GELU(), nn.LayerNorm(hidden, eps=1e-12), nn.Linear(hidden, hidden))

    def logits(self, item_repr: torch.Tensor, property_vecs: torch.Tensor, value_vecs: torch.Tensor) -> torch.Tensor:
        """item_repr [M, H], property_vecs [M, H], value_vecs [U, H] -> [M, U]."""
        return self.query(torch.cat([item_repr, property_vecs], dim=-1)) @ value_vecs.T

    def loss(self, item_repr, property_vecs, value_vecs, target: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the true value (row ``target`` of ``value_vecs``); 0 without masked pairs."""
        if target.numel() == 0:
            return value_vecs.sum() * 0.0
        return F.cross_entropy(self.logits(item_repr, property_vecs, value_vecs).float(), target)


class MaskedPairs(ValuePredictionHead, TaskHead):
    """Task head ``mlm_knowledge`` of frozen encoders: the values of the pairs masked out of
    the knowledge stream, predicted from c* and the property among the batch's values."""

    tasks = ("mlm_knowledge",)

    def losses(self, ctx) -> dict[str, torch.Tensor]:
        batch = ctx.batch
        if ctx.targets is None or batch.lpm is None or "knowledge" not in ctx.streams:
            return {}
        props, values = ctx.vocabulary()
        masked = ctx.targets.masked
        return {"mlm_knowledge": self.loss(ctx.item_repr[masked.item], props[rows_of(masked.property, batch.lpm.property_ids)],
                                           values, rows_of(masked.value, batch.lpm.value_ids))}
