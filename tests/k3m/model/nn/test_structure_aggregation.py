"""StructureAggregation against the per-item formula of the paper, written out directly."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from k3m.model.nn.structure_aggregation import StructureAggregation

pytestmark = pytest.mark.usefixtures("single_thread")


def per_item_reference(layer: StructureAggregation, c, p, v, pair_item):
    """c* = c + W3 sum_x softmax_x(w2^T LeakyReLU(t_x)) t_x with t_x = W1 [c || p_x || v_x]."""
    out = c.clone()
    heads, d = layer.heads, layer.head_dim
    for i in range(c.shape[0]):
        idx = (pair_item == i).nonzero().flatten()
        if len(idx) == 0:
            continue
        t = torch.cat([c[i].expand(len(idx), -1), p[idx], v[idx]], 1) @ layer.w1.T + layer.lin_item.bias
        t = t.view(-1, heads, d)
        alpha = (F.leaky_relu(t, layer.negative_slope) * layer.att).sum(-1).softmax(0)
        out[i] = c[i] + layer.lin_out((alpha.unsqueeze(-1) * t).sum(0).reshape(-1))
    return out


def aggregate(layer, c, p, v, pair_item, **kwargs):
    """The layer on the star graph of the pairs: value node j -> item pair_item[j], property j on the edge."""
    edge_index = torch.stack([torch.arange(len(pair_item)), pair_item])
    return layer((v, c), edge_index, p, **kwargs)


def inputs(num_items=7, hidden=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    counts = torch.tensor([3, 0, 1, 10, 0, 2, 5])[:num_items]  # items 1 and 4 have no triples
    pair_item = torch.repeat_interleave(torch.arange(num_items), counts)
    P = int(counts.sum())
    return torch.randn(num_items, hidden, generator=g), torch.randn(P, hidden, generator=g), torch.randn(P, hidden, generator=g), pair_item


def test_matches_the_per_item_formula_and_items_without_triples_keep_c():
    torch.manual_seed(0)
    layer = StructureAggregation(32, heads=4)
    c, p, v, pair_item = inputs()
    out, (edge_index, alpha) = aggregate(layer, c, p, v, pair_item, return_attention_weights=True)
    assert torch.equal(edge_index[1], pair_item) and alpha.shape == (len(pair_item), 4)
    torch.testing.assert_close(out, per_item_reference(layer, c, p, v, pair_item), atol=1e-5, rtol=1e-5)
    assert torch.equal(out[1], c[1]) and torch.equal(out[4], c[4])
    sums = torch.zeros(7, 4).index_add_(0, pair_item, alpha)
    torch.testing.assert_close(sums[[0, 2, 3, 5, 6]], torch.ones(5, 4))


def test_pair_order_does_not_matter_and_gradients_reach_every_weight():
    torch.manual_seed(0)
    layer = StructureAggregation(32, heads=8)
    c, p, v, pair_item = inputs()
    perm = torch.randperm(len(pair_item))
    torch.testing.assert_close(aggregate(layer, c, p, v, pair_item), aggregate(layer, c, p[perm], v[perm], pair_item[perm]), atol=1e-5, rtol=1e-5)
    c.requires_grad_(True)
    aggregate(layer, c, p, v, pair_item).square().sum().backward()
    assert all(param.grad is not None and param.grad.abs().sum() > 0 for param in layer.parameters())


def test_single_item_and_no_pairs_at_all():
    layer = StructureAggregation(16, heads=2)
    c = torch.randn(1, 16)
    empty = torch.zeros(0, 16)
    assert torch.equal(aggregate(layer, c, empty, empty, torch.zeros(0, dtype=torch.long)), c)
    out = aggregate(layer, c, torch.randn(1, 16), torch.randn(1, 16), torch.zeros(1, dtype=torch.long))
    assert out.shape == (1, 16) and not torch.equal(out, c)


def test_shared_value_nodes_and_reset_parameters():
    """Like GATConv, value nodes may be shared by several edges (the KG's own star graphs)."""
    torch.manual_seed(0)
    layer = StructureAggregation(16, heads=2)
    c, values, props = torch.randn(3, 16), torch.randn(2, 16), torch.randn(4, 16)
    edge_index = torch.tensor([[0, 1, 0, 1], [0, 0, 1, 2]])  # value 0 reaches items 0 and 1
    shared = layer((values, c), edge_index, props)
    mentions = layer((values[edge_index[0]], c), torch.stack([torch.arange(4), edge_index[1]]), props)
    torch.testing.assert_close(shared, mentions)
    before = [p.detach().clone() for p in layer.parameters()]
    layer.reset_parameters()
    assert all(not torch.equal(a, b) for a, b in zip(before, layer.parameters()))
