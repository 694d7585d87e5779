"""Structure aggregation: a multi-head GAT over the star graphs item <- (property, value).

For item c with triples x = (p_x, v_x) (K3M, section "structure aggregation")::

    t_x = W1 [c || p_x || v_x]
    b_x = w2^T LeakyReLU(t_x)            (per head)
    a   = softmax of b over the item's triples (torch_geometric.utils.softmax)
    c*  = c + W3 sum_x a_x t_x

W1 is split into its item part (applied once per item) and its pair part (once per pair);
their sum is exactly W1 on the concatenation. W3 has no bias, so an item without triples
gets c* = c exactly. Messages flow from pair j to item ``pair_item[j]`` (one edge per pair,
the order of ``K3MBatch.graph``'s item-has-value edges); all items aggregate at once.
"""
from __future__ import annotations

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
        nn.init.xavier_uniform_(self.att)
        self._alpha: torch.Tensor | None = None

    @property
    def w1(self) -> torch.Tensor:
        """W1 as one [hidden, 3*hidden] matrix acting on [c || p || v] (for reference code)."""
        return torch.cat([self.lin_item.weight, self.lin_pair.weight], dim=1)

    def forward(
        self,
        item: torch.Tensor,
        prop: torch.Tensor,
        value: torch.Tensor,
        pair_item: torch.Tensor,
        return_attention: bool = False,
    ):
        """item c [B, H]; prop, value [P, H]; pair_item long [P] -> c* [B, H]
        (and the attention [P, heads] when ``return_attention``)."""
        num_items, num_pairs = item.shape[0], prop.shape[0]
        pair_part = self.lin_pair(torch.cat([prop, value], dim=-1)).view(num_pairs, self.heads, self.head_dim)
        item_part = self.lin_item(item).view(num_items, self.heads, self.head_dim)
        edge_index = torch.stack([torch.arange(num_pairs, device=pair_item.device), pair_item])
        aggregated = self.propagate(edge_index, x=(pair_part, item_part), size=(num_pairs, num_items))
        out = item + self.lin_out(aggregated.reshape(num_items, self.hidden))
        alpha, self._alpha = self._alpha, None
        return (out, alpha) if return_attention else out

    def message(self, x_j: torch.Tensor, x_i: torch.Tensor, index: torch.Tensor, ptr, size_i: int) -> torch.Tensor:
        t = x_j + x_i  # [P, heads, d] = W1 [c || p || v] per head
        score = (F.leaky_relu(t, self.negative_slope) * self.att).sum(-1)  # [P, heads]
        alpha = softmax(score, index, ptr, size_i)
        self._alpha = alpha
        alpha = F.dropout(alpha, p=self.dropout, training=self.training)
        return t * alpha.unsqueeze(-1)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(hidden={self.hidden}, heads={self.heads})"
