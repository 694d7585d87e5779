"""K3MBatch: what the data pipeline hands the model (build → batch → model).

One batch = B items. Token ids are already MLM-masked where ``*_mlm_labels`` != -100.
Presence is explicit: a missing title, image or knowledge has ``*_present[b] = False`` and
all-False attention mask rows; there is never a zero tensor pretending to be data.

Knowledge pairs: the item's (property, value) pairs kept in its knowledge text
``p1 : v1 ; p2 : v2 ; ...`` (capped at ``max_pairs`` and ``max_knowledge_tokens``).
Pair ``j`` belongs to batch item ``pair_item[j]``; its property and value are the token
spans ``[start, end)`` of row ``pair_item[j]`` of ``knowledge_input_ids``. The PyG
``graph`` has one ``('item', 'has', 'value')`` edge per pair, in the same order, so
edge ``j`` <-> pair ``j``.

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


@dataclass
class K3MBatch:
    item_index: torch.Tensor  # long [B], rows of the catalog build

    # title (MLM-masked)
    title_input_ids: torch.Tensor  # long [B, Lt]
    title_attention_mask: torch.Tensor  # bool [B, Lt], True = real token
    title_present: torch.Tensor  # bool [B]
    title_mlm_labels: torch.Tensor  # long [B, Lt], -100 = not a target

    # image: raw pixels (patch / CNN encoders) ...
    image_pixels: Optional[torch.Tensor]  # uint8 [B, 3, H, W]
    image_present: torch.Tensor  # bool [B]
    image_token_mask: torch.Tensor  # bool [B, Nv], True = masked for MOM
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

    # pairs / triples of the batch
    pair_item: Optional[torch.Tensor] = None  # long [P], batch position
    pair_property: Optional[torch.Tensor] = None  # long [P], global property id
    pair_value: Optional[torch.Tensor] = None  # long [P], global value id
    pair_property_span: Optional[torch.Tensor] = None  # long [P, 2] token [start, end)
    pair_value_span: Optional[torch.Tensor] = None  # long [P, 2]
    graph: Optional[HeteroData] = None  # item -has-> value star graphs, edge j == pair j

    # LPM
    lpm_neg_value: Optional[torch.Tensor] = None  # long [P, K] global value ids
    lpm_neg_item: Optional[torch.Tensor] = None  # long [P, K] batch positions, -1 = none
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
            if isinstance(value, torch.Tensor):
                setattr(self, f.name, value.pin_memory())
        return self
