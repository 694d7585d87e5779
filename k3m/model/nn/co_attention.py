"""Two-stream co-attention (ViLBERT's connection layer): each stream queries the other
(query from one, keys and values from the other), then a feed-forward per stream. Both
directions read the other stream's input of the same layer, so they are symmetric. Each
stream already had its own self-attention (BERT for text, the image layers for visual
tokens); a stack has configurable depth.
"""
from __future__ import annotations

import torch
from torch import nn

from k3m.model.nn.attention import AttentionBlock, FeedForwardBlock


class CoAttentionLayer(nn.Module):
    def __init__(self, dim_a: int, dim_b: int, hidden: int, heads: int, intermediate: int, dropout: float):
        super().__init__()
        self.cross_a = AttentionBlock(dim_a, dim_b, hidden, heads, dropout)
        self.cross_b = AttentionBlock(dim_b, dim_a, hidden, heads, dropout)
        self.ffn_a = FeedForwardBlock(dim_a, intermediate, dropout)
        self.ffn_b = FeedForwardBlock(dim_b, intermediate, dropout)

    def forward(self, a: torch.Tensor, mask_a: torch.Tensor, b: torch.Tensor, mask_b: torch.Tensor):
        return self.ffn_a(self.cross_a(a, b, mask_b)), self.ffn_b(self.cross_b(b, a, mask_a))


class CoAttentionStack(nn.Module):
    """``num_layers`` co-attention layers between streams a [B, La, Da] and b [B, Lb, Db]."""

    def __init__(self, dim_a: int, dim_b: int, num_layers: int, hidden: int, heads: int, intermediate: int, dropout: float):
        super().__init__()
        if num_layers < 1:
            raise ValueError("a co-attention stack needs at least one layer (switch the pair off instead)")
        self.layers = nn.ModuleList(CoAttentionLayer(dim_a, dim_b, hidden, heads, intermediate, dropout) for _ in range(num_layers))

    def forward(self, a, mask_a, b, mask_b):
        for layer in self.layers:
            a, b = layer(a, mask_a, b, mask_b)
        return a, b
