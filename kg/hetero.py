"""PyG HeteroData views of the product KG: star graphs item -has-> value over the catalog's
triples (``item_value_graph``), the graph view a DGL export or a GNN over the catalog reads.

Node types: ``item`` (the given items, in order; ``item_index`` = build rows) and ``value``:
**one node per distinct value** the items' triples point at (``value_id`` = global value id),
shared by every item stating it. Edge type ``HAS = ('item', 'has', 'value')`` carries the
property id of each triple in ``edge_attr`` and ``edge_property``; ``REV_HAS`` is its reverse.
Items without triples are still nodes, with no edges.

Not K3M's batch graph: the model reads ``k3m.model.batch_graph``, with one ``value_mention``
node per pair of an item's knowledge stream (a contextual value vector per mention) and its
own edge types (``mentions`` / ``mentioned_by``).
"""
from __future__ import annotations

import numpy as np
import torch

import kg.pyg  # noqa: F401  (before torch_geometric: see kg/pyg.py)
from torch_geometric.data import HeteroData

HAS = ("item", "has", "value")
REV_HAS = ("value", "rev_has", "item")


def star_graph(
    pair_item: torch.Tensor,
    pair_property: torch.Tensor,
    pair_value: torch.Tensor,
    num_items: int,
    item_index: torch.Tensor | None = None,
) -> HeteroData:
    """Edges from item positions ``pair_item`` to the distinct values ``pair_value`` (one
    node each). Edge ``j`` corresponds to input pair ``j`` (order kept)."""
    pair_item = torch.as_tensor(pair_item, dtype=torch.long)
    pair_property = torch.as_tensor(pair_property, dtype=torch.long)
    pair_value = torch.as_tensor(pair_value, dtype=torch.long)
    value_id, value_local = torch.unique(pair_value, return_inverse=True)

    data = HeteroData()
    data["item"].num_nodes = int(num_items)
    if item_index is not None:
        data["item"].item_index = torch.as_tensor(item_index, dtype=torch.long)
    data["value"].num_nodes = int(value_id.numel())
    data["value"].value_id = value_id
    edge_index = torch.stack([pair_item, value_local.view(-1)]) if pair_item.numel() else torch.empty(2, 0, dtype=torch.long)
    data[HAS].edge_index = edge_index
    data[HAS].edge_attr = pair_property
    data[HAS].edge_property = pair_property
    data[REV_HAS].edge_index = edge_index.flip(0)
    data[REV_HAS].edge_attr = pair_property
    return data


def item_value_graph(build, item_indices, train_only: bool = True) -> HeteroData:
    """Star graph of the given build items over their triples (train split by default).

    Item ``j`` of the result is ``item_indices[j]`` (repeats allowed, each gets its own
    edges); an item without (train) triples is a node with no edges, never another item's.
    """
    item_indices = np.asarray(item_indices, dtype=np.int64).reshape(-1)
    offsets = np.asarray(build.item_triple_offsets)
    triples = np.asarray(build.triples)
    starts, counts = offsets[item_indices], offsets[item_indices + 1] - offsets[item_indices]
    # Row ids of every selected item's triples, and the batch position each belongs to.
    pair_item = np.repeat(np.arange(len(item_indices), dtype=np.int64), counts)
    rows = np.repeat(starts - (np.cumsum(counts) - counts), counts) + np.arange(int(counts.sum()), dtype=np.int64)
    if train_only:
        keep = np.asarray(build.triple_split)[rows] == 0
        rows, pair_item = rows[keep], pair_item[keep]
    return star_graph(
        torch.from_numpy(pair_item),
        torch.from_numpy(triples[rows, 1].astype(np.int64)),
        torch.from_numpy(triples[rows, 2].astype(np.int64)),
        num_items=len(item_indices),
        item_index=torch.from_numpy(item_indices),
    )
