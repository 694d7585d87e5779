"""Masked pair modelling (frozen encoders): a pair taken out of an item's knowledge stream
and graph; from c* and the pair's property, predict its value among the batch's candidate
values (the positives and the LPM negatives: a sampled softmax). MLM on knowledge values,
at the level of whole pairs, where the cache cannot leak the answer.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


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
