"""The batch star graph: a batch's (property, value) pairs as a PyG ``HeteroData``, one node
per value *mention*.

Not the catalog's graph view (``kg.hetero``: one ``value`` node per distinct value, edges
``has`` / ``rev_has``): K3M's value vector is contextual, the mean over the value's token span
in one item's knowledge stream, so two items stating the same value hold two mentions of it.
The node and edge types are named apart from ``kg.hetero``'s so that the two graphs are never
confused:

- ``item`` nodes: the batch's items in batch order (``item_index`` = build rows);
- ``value_mention`` nodes: one per pair, ``value_id`` = the global value it mentions,
  ``item`` = the batch item whose knowledge stream holds it, ``span`` = its tokens there;
- ``MENTIONS`` edges (item -> value mention), edge ``j`` = pair ``j``: ``edge_attr`` = the
  property id, ``property_span`` = the property's tokens; ``MENTIONED_BY`` is the reverse,
  which the structure aggregation (the GAT) reads. Items without pairs are nodes without
  edges (c* = c).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

import kg.pyg  # noqa: F401  (before torch_geometric: see kg/pyg.py)
from torch_geometric.data import HeteroData

ITEM = "item"
VALUE_MENTION = "value_mention"
MENTIONS = (ITEM, "mentions", VALUE_MENTION)
MENTIONED_BY = (VALUE_MENTION, "mentioned_by", ITEM)


@dataclass
class Pairs:
    """(item, property, value) pairs of a batch: batch positions and global ids, long [N] each."""

    item: torch.Tensor
    property: torch.Tensor
    value: torch.Tensor

    def __len__(self) -> int:
        return int(self.item.numel())

    def then(self, other: "Pairs | None") -> "Pairs":
        """These pairs followed by ``other``'s."""
        if other is None:
            return self
        return Pairs(torch.cat([self.item, other.item]), torch.cat([self.property, other.property]),
                     torch.cat([self.value, other.value]))


def batch_graph(
    pair_item: torch.Tensor,
    pair_property: torch.Tensor,
    pair_value: torch.Tensor,
    property_span: torch.Tensor,
    value_span: torch.Tensor,
    num_items: int,
    item_index: torch.Tensor,
) -> HeteroData:
    """The batch's star graphs, edge ``j`` = pair ``j`` = value mention ``j``: pair ``j`` of
    batch item ``pair_item[j]`` with its property and value tokens ``[start, end)`` in that
    item's knowledge stream (``property_span``, ``value_span``)."""
    num_pairs = int(pair_item.numel())
    mention = torch.arange(num_pairs, dtype=torch.long)
    data = HeteroData()
    data[ITEM].num_nodes = int(num_items)
    data[ITEM].item_index = item_index
    data[VALUE_MENTION].num_nodes = num_pairs
    data[VALUE_MENTION].value_id = pair_value
    data[VALUE_MENTION].item = pair_item  # whose knowledge stream the mention's span is in
    data[VALUE_MENTION].span = value_span
    data[MENTIONS].edge_index = torch.stack([pair_item, mention])
    data[MENTIONS].edge_attr = pair_property
    data[MENTIONS].property_span = property_span
    data[MENTIONED_BY].edge_index = torch.stack([mention, pair_item])
    data[MENTIONED_BY].edge_attr = pair_property
    return data
