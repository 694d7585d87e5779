"""Frozen encoders' features into a stream: Linear -> LayerNorm -> Dropout (the streams then
look like a BERT layer's output to the co-attention that reads them)."""
from __future__ import annotations

import torch
from torch import nn


class FeatureProjection(nn.Module):
    def __init__(self, in_features: int, hidden: int, dropout: float = 0.1):
        super().__init__()
        self.linear = nn.Linear(in_features, hidden)
        self.norm = nn.LayerNorm(hidden, eps=1e-12)
        self.dropout = nn.Dropout(dropout)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.norm(self.linear(features.to(self.linear.weight.dtype))))
