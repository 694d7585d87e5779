"""K3MBatch: what the data pipeline hands the model (build → batch → model).

One batch = B items. Token ids are already MLM-masked where ``*_mlm_labels`` != -100.
Presence is explicit: a missing title, image or knowledge has ``*_present[b] = False`` and
all-False attention mask rows; there is never a zero tensor pretending to be data.

Knowledge pairs: the item's (property, value) pairs kept in its knowledge text
``p1 : v1 ; p2 : v2 ; ...`` (capped at ``max_pairs`` and ``max_knowledge_tokens``). They
live in one place, the batch's PyG star graph ``graph`` (:func:`batch_graph`): item nodes
(batch order), one value node per pair, and edge ``j`` = pair ``j`` from item to value
(``('item', 'has', 'value')``, the property id on the edge) and back
(``('value', 'rev_has', 'item')``, which the structure aggregation reads). The
``pair_*`` properties are views of it: pair ``j`` belongs to batch item ``pair_item[j]``;
its property and value are the token spans ``[start, end)`` of row ``pair_item[j]`` of
``knowledge_input_ids``.

LPM (link prediction, margin loss): positives are the pairs; ``lpm_neg_value[j, k]`` are
global value ids drawn from the same property's values and filtered against the item's
true triples; ``lpm_neg_item[j, k]`` are batch positions of other items for which
(item, property, value) is not a true triple (-1 where none exists). Property and value
vectors for LPM scoring come from encoding the strings on their own:
``lpm_value_ids`` lists the unique global values the batch needs (positives + negatives)
and ``lpm_value_input_ids`` their tokens; ``lpm_property_ids``/``..._input_ids`` the same
for properties.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Optional

import torch

import kg.pyg  # noqa: F401  (before torch_geometric: see kg/pyg.py)
from torch_geometric.data import HeteroData

from kg.hetero import HAS, REV_HAS


def batch_graph(
    pair_item: torch.Tensor,
    pair_property: torch.Tensor,
    pair_value: torch.Tensor,
    property_span: torch.Tensor,
    value_span: torch.Tensor,
    num_items: int,
    item_index: torch.Tensor,
) -> HeteroData:
    """The batch's star graphs, edge ``j`` = pair ``j``.

    Value nodes are the pairs' value *mentions*, one per pair (``value_id`` names the global
    value): K3M's value vector is contextual, the mean over the value's token span
    (``span``) in the knowledge text of batch item ``item``, so two items sharing a value
    still have two value vectors. The property is on the edge (``edge_attr`` = property id,
    ``property_span`` its tokens). Items without pairs are nodes without edges (c* = c).
    """
    num_pairs = int(pair_item.numel())
    mention = torch.arange(num_pairs, dtype=torch.long)
    data = HeteroData()
    data["item"].num_nodes = int(num_items)
    data["item"].item_index = item_index
    data["value"].num_nodes = num_pairs
    data["value"].value_id = pair_value
    data["value"].item = pair_item  # whose knowledge text the mention's span is in
    data["value"].span = value_span
    data[HAS].edge_index = torch.stack([pair_item, mention])
    data[HAS].edge_attr = pair_property
    data[HAS].property_span = property_span
    data[REV_HAS].edge_index = torch.stack([mention, pair_item])
    data[REV_HAS].edge_attr = pair_property
    return data


@dataclass
class K3MBatch:
    item_index: torch.Tensor  # long [B], rows of the catalog build

    # title (MLM-masked)
    title_attention_mask: torch.Tensor  # bool [B, Lt], True = real token
    title_present: torch.Tensor  # bool [B]
    image_present: torch.Tensor  # bool [B]
    title_input_ids: Optional[torch.Tensor] = None  # long [B, Lt]
    title_mlm_labels: Optional[torch.Tensor] = None  # long [B, Lt], -100 = not a target

    # image: raw pixels (patch / CNN / EfficientNet encoders) ...
    image_pixels: Optional[torch.Tensor] = None  # uint8 [B, 3, H, W]
    image_token_mask: Optional[torch.Tensor] = None  # bool [B, Nv], True = masked for MOM
    # ... or precomputed regions in the original K3M layout
    region_features: Optional[torch.Tensor] = None  # float [B, R, 2048]
    region_locations: Optional[torch.Tensor] = None  # float [B, R, 5]
    region_class_probs: Optional[torch.Tensor] = None  # float [B, R, 1601]
    region_mask: Optional[torch.Tensor] = None  # bool [B, R], True = real region

    # knowledge text (value tokens MLM-masked)
    knowledge_input_ids: Optional[torch.Tensor] = None  # long [B, Lk]
    knowledge_attention_mask: Optional[torch.Tensor] = None  # bool [B, Lk]
    knowledge_present: Optional[torch.Tensor] = None  # bool [B]
    knowledge_mlm_labels: Optional[torch.Tensor] = None  # long [B, Lk]

    # pairs / triples of the batch: the star graphs (batch_graph), edge j == pair j
    graph: Optional[HeteroData] = None

    # frozen encoders (K3MConfig.encoders = "frozen"): cached features instead of token ids
    # and pixels; masks and presence as above
    title_features: Optional[torch.Tensor] = None  # float [B, Lt, F] the title's token features
    knowledge_features: Optional[torch.Tensor] = None  # float [B, P, F] one "property : value" vector per pair
    image_features: Optional[torch.Tensor] = None  # float [B, N, 1280] grid tokens
    property_features: Optional[torch.Tensor] = None  # float [Up, F] property names, rows of lpm_property_ids
    value_features: Optional[torch.Tensor] = None  # float [U, F] values, rows of lpm_value_ids
    # ... their pretraining targets: the item's own features, whatever it was shown
    title_target: Optional[torch.Tensor] = None  # float [B, F] mean of its title's token features
    title_target_present: Optional[torch.Tensor] = None  # bool [B]
    image_target: Optional[torch.Tensor] = None  # float [B, 1280] mean of its grid
    image_target_present: Optional[torch.Tensor] = None  # bool [B]
    # ... and the pairs masked out of the knowledge stream and the graph (values to predict)
    masked_pair_item: Optional[torch.Tensor] = None  # long [M] batch positions
    masked_pair_property: Optional[torch.Tensor] = None  # long [M]
    masked_pair_value: Optional[torch.Tensor] = None  # long [M]

    # LPM: positives are the graph's pairs, then the masked pairs (lpm_positives)
    lpm_neg_value: Optional[torch.Tensor] = None  # long [Q, K] global value ids
    lpm_neg_item: Optional[torch.Tensor] = None  # long [Q, K] batch positions, -1 = none
    lpm_value_ids: Optional[torch.Tensor] = None  # long [U] unique global value ids
    lpm_value_input_ids: Optional[torch.Tensor] = None  # long [U, Lv]
    lpm_value_attention_mask: Optional[torch.Tensor] = None  # bool [U, Lv]
    lpm_property_ids: Optional[torch.Tensor] = None  # long [Up]
    lpm_property_input_ids: Optional[torch.Tensor] = None  # long [Up, Lp]
    lpm_property_attention_mask: Optional[torch.Tensor] = None  # bool [Up, Lp]

    # downstream label
    category: Optional[torch.Tensor] = None  # long [B], -1 = unknown

    @property
    def batch_size(self) -> int:
        return int(self.item_index.shape[0])

    def lpm_positives(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(item, property, value) [Q] of the LPM positives: the pairs in the graph, then the
        masked ones (frozen encoders), in the order of ``lpm_neg_*``."""
        item, prop, value = self.pair_item, self.pair_property, self.pair_value
        if self.masked_pair_item is None:
            return item, prop, value
        return (torch.cat([item, self.masked_pair_item]), torch.cat([prop, self.masked_pair_property]),
                torch.cat([value, self.masked_pair_value]))

    # -- views of the graph -----------------------------------------------------------
    @property
    def pair_item(self) -> Optional[torch.Tensor]:
        """long [P], the batch position of each pair's item."""
        return None if self.graph is None else self.graph[HAS].edge_index[0]

    @property
    def pair_property(self) -> Optional[torch.Tensor]:
        """long [P], global property ids."""
        return None if self.graph is None else self.graph[HAS].edge_attr

    @property
    def pair_value(self) -> Optional[torch.Tensor]:
        """long [P], global value ids."""
        return None if self.graph is None else self.graph["value"].value_id

    @property
    def pair_property_span(self) -> Optional[torch.Tensor]:
        """long [P, 2], token [start, end) of each property in its item's knowledge text."""
        return None if self.graph is None else self.graph[HAS].property_span

    @property
    def pair_value_span(self) -> Optional[torch.Tensor]:
        """long [P, 2], token [start, end) of each value."""
        return None if self.graph is None else self.graph["value"].span

    def to(self, device, non_blocking: bool = False) -> "K3MBatch":
        moved = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, (torch.Tensor, HeteroData)):
                value = value.to(device, non_blocking=non_blocking)
            moved[f.name] = value
        return K3MBatch(**moved)

    def pin_memory(self) -> "K3MBatch":
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, (torch.Tensor, HeteroData)):
                setattr(self, f.name, value.pin_memory())
        return self
