"""Structure aggregation: a multi-head GAT over the star graphs item <- (property, value).

For item c with triples x = (p_x, v_x) (K3M, section "structure aggregation")::

    t_x = W1 [c || p_x || v_x]
    b_x = w2^T LeakyReLU(t_x)            (per head)
    a   = softmax of b over the item's triples (torch_geometric.utils.softmax)
    c*  = c + W3 sum_x a_x t_x

Called like PyG's ``GATConv`` on a bipartite graph: ``x = (value nodes, item nodes)``,
``edge_index`` [2, E] from value node to item, and the property on the edge
(``edge_attr`` [E, H]); ``return_attention_weights=True`` also returns
``(edge_index, alpha)``. In K3M these are the batch's star graph (``K3MBatch.graph``, edge
type ``('value', 'rev_has', 'item')``): item nodes carry the centre c, value nodes the value
vectors, edges the property vectors.

W1 is split into its item part (applied once per item) and its pair part (once per edge);
their sum is exactly W1 on the concatenation. W3 has no bias, so an item without triples
gets c* = c exactly. All items aggregate at once.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

import kg.pyg  # noqa: F401  (before torch_geometric: see kg/pyg.py)
from torch_geometric.nn import MessagePassing
from torch_geometric.utils import softmax


class StructureAggregation(MessagePassing):
    def __init__(self, hidden: int, heads: int = 8, negative_slope: float = 0.2, dropout: float = 0.0):
        super().__init__(aggr="add", node_dim=0)
        if hidden % heads:
            raise ValueError(f"hidden {hidden} is not divisible by {heads} heads")
        self.hidden, self.heads, self.head_dim = hidden, heads, hidden // heads
        self.negative_slope, self.dropout = negative_slope, dropout
        self.lin_item = nn.Linear(hidden, hidden)  # W1 on c (carries W1's bias)
        self.lin_pair = nn.Linear(2 * hidden, hidden, bias=False)  # W1 on [p || v]
        self.att = nn.Parameter(torch.empty(1, heads, self.head_dim))  # w2, one per head
        self.lin_out = nn.Linear(hidden, hidden, bias=False)  # W3
        nn.init.xavier_uniform_(self.att)  # the linears initialised themselves (reset_parameters redoes all)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        self.lin_item.reset_parameters()
        self.lin_pair.reset_parameters()
        self.lin_out.reset_parameters()
        nn.init.xavier_uniform_(self.att)

    @property
    def w1(self) -> torch.Tensor:
        """W1 as one [hidden, 3*hidden] matrix acting on [c || p || v] (for reference code)."""
        return torch.cat([self.lin_item.weight, self.lin_pair.weight], dim=1)

    def forward(
        self,
        x: tuple[torch.Tensor, torch.Tensor],
        edge_index: torch.Tensor,
        edge_attr: torch.Tensor,
        return_attention_weights: Optional[bool] = None,
    ):
        """x = (values [V, H], items c [B, H]); edge_index long [2, E] value -> item;
        edge_attr [E, H] property vectors -> c* [B, H] (and ``(edge_index, alpha [E, heads])``
        when ``return_attention_weights``)."""
        values, items = x
        num_items = items.shape[0]
        pair_part = self.lin_pair(torch.cat([edge_attr, values.index_select(0, edge_index[0])], dim=-1))
        pair_part = pair_part.view(-1, self.heads, self.head_dim)  # W1 [p || v] per edge
        item_part = self.lin_item(items).view(num_items, self.heads, self.head_dim)
        size = (values.shape[0], num_items)
        t, alpha = self.edge_updater(edge_index, pair_part=pair_part, item_part=(None, item_part), size=size)
        aggregated = self.propagate(edge_index, t=t, alpha=alpha, size=size)
        out = items + self.lin_out(aggregated.reshape(num_items, self.hidden))
        return (out, (edge_index, alpha)) if return_attention_weights else out

    def edge_update(self, pair_part: torch.Tensor, item_part_i: torch.Tensor, index: torch.Tensor, ptr, size_i: int):
        """(t [E, heads, d] = W1 [c || p || v] per head, alpha [E, heads] over each item's edges)."""
        t = pair_part + item_part_i
        score = (F.leaky_relu(t, self.negative_slope) * self.att).sum(-1)
        return t, softmax(score, index, ptr, size_i)

    def message(self, t: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        return t * F.dropout(alpha, p=self.dropout, training=self.training).unsqueeze(-1)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(hidden={self.hidden}, heads={self.heads})"
