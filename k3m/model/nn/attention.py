"""Multi-head attention on ``torch.nn.functional.scaled_dot_product_attention`` (fused
kernels on CUDA) and the post-LayerNorm BERT blocks built from it.

Masks are boolean, True = real token. A row whose context has no real token at all (a
missing modality) gets a zero attention output, so the residual carries the query through
unchanged: no NaN from a softmax over nothing, and no host sync to find such rows.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MultiHeadAttention(nn.Module):
    def __init__(self, query_dim: int, context_dim: int, hidden: int, heads: int, dropout: float = 0.0):
        super().__init__()
        self.heads, self.head_dim, self.dropout = heads, hidden // heads, dropout
        self.query = nn.Linear(query_dim, hidden)
        self.key_value = nn.Linear(context_dim, 2 * hidden)
        self.out = nn.Linear(hidden, query_dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor) -> torch.Tensor:
        b, lq, _ = x.shape
        lk = context.shape[1]
        q = self.query(x).view(b, lq, self.heads, self.head_dim).transpose(1, 2)
        k, v = self.key_value(context).view(b, lk, 2, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        has_context = context_mask.any(-1)  # [B]
        # rows with no real key attend to everything (finite), then get zeroed below
        mask = (context_mask | ~has_context.unsqueeze(-1))[:, None, None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        out = self.out(out.transpose(1, 2).reshape(b, lq, self.heads * self.head_dim))
        return out * has_context[:, None, None].to(out.dtype)


class AttentionBlock(nn.Module):
    """LayerNorm(x + Dropout(Attention(x, context)))."""

    def __init__(self, query_dim: int, context_dim: int, hidden: int, heads: int, dropout: float):
        super().__init__()
        self.attention = MultiHeadAttention(query_dim, context_dim, hidden, heads, dropout)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(query_dim, eps=1e-12)

    def forward(self, x, context, context_mask):
        return self.norm(x + self.dropout(self.attention(x, context, context_mask)))


class FeedForwardBlock(nn.Module):
    def __init__(self, dim: int, intermediate: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, intermediate), nn.GELU(), nn.Linear(intermediate, dim), nn.Dropout(dropout))
        self.norm = nn.LayerNorm(dim, eps=1e-12)

    def forward(self, x):
        return self.norm(x + self.net(x))


class TransformerLayer(nn.Module):
    """Self-attention + feed-forward (used for the image-only stream)."""

    def __init__(self, dim: int, heads: int, intermediate: int, dropout: float):
        super().__init__()
        self.attention = AttentionBlock(dim, dim, dim, heads, dropout)
        self.feed_forward = FeedForwardBlock(dim, intermediate, dropout)

    def forward(self, x, mask):
        return self.feed_forward(self.attention(x, x, mask))
