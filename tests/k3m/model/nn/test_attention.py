"""Attention and co-attention with missing streams and padding."""
from __future__ import annotations

import pytest
import torch

from k3m.model.nn.attention import MultiHeadAttention
from k3m.model.nn.co_attention import CoAttentionStack

pytestmark = pytest.mark.usefixtures("single_thread")


def test_a_row_without_context_gets_zero_attention_not_nan():
    torch.manual_seed(0)
    attn = MultiHeadAttention(16, 24, 32, 4)
    x, ctx = torch.randn(2, 5, 16), torch.randn(2, 7, 24)
    mask = torch.tensor([[True] * 4 + [False] * 3, [False] * 7])
    out = attn(x, ctx, mask)
    assert torch.isfinite(out).all() and torch.equal(out[1], torch.zeros(5, 16))
    ctx2 = ctx.clone()
    ctx2[0, 4:] = 100.0  # padding content is ignored
    torch.testing.assert_close(attn(x, ctx2, mask), out)


def test_co_attention_streams_of_different_widths_and_depth():
    torch.manual_seed(0)
    stack = CoAttentionStack(16, 24, num_layers=2, hidden=32, heads=4, intermediate=32, dropout=0.0)
    a, b = torch.randn(3, 5, 16), torch.randn(3, 9, 24)
    ma = torch.tensor([[True] * 5, [True] * 2 + [False] * 3, [False] * 5])
    mb = torch.tensor([[True] * 9, [False] * 9, [True] * 3 + [False] * 6])
    out_a, out_b = stack(a, ma, b, mb)
    assert out_a.shape == a.shape and out_b.shape == b.shape and len(stack.layers) == 2
    assert torch.isfinite(out_a).all() and torch.isfinite(out_b).all()
    # item 1 has no b tokens: its a stream goes through unchanged by b (only its own FFN)
    b2 = b.clone()
    b2[1] = torch.randn(9, 24)
    torch.testing.assert_close(stack(a, ma, b2, mb)[0][1], out_a[1])
