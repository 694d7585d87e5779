"""K3MBatch: what the data pipeline hands the model (build → batch → model).

One batch = B items. The fields every encoder mode shares live here: the items, their
presence per modality, the batch star graph of their pairs (:mod:`k3m.model.batch_graph`),
the LPM targets and the label. What a mode's encoders read is one typed sub-batch,
``inputs`` (:class:`~k3m.model.inputs.TokenInputs` or
:class:`~k3m.model.inputs.FeatureInputs`), with its pretraining targets in ``targets``
(None for a batch made without targets).

Presence is explicit: a missing title, image or knowledge has ``*_present[b] = False`` and
all-False mask rows in ``inputs``; there is never a zero tensor pretending to be data.

Pairs: the item's (property, value) pairs kept in its knowledge stream. They live in one
place, ``graph``: edge ``j`` = pair ``j`` from item ``pair_item[j]`` to value mention ``j``;
the ``pair_*`` properties are views of it.

LPM (link prediction, margin loss): ``lpm.positives`` are the graph's pairs, then the pairs
masked out of the stream (frozen encoders); ``lpm.neg_value[j, k]`` are global value ids of
the same property (and, with ``lpm.random_negatives``, of any property), filtered against the
item's true triples (-1 where none was found); ``lpm.neg_item[j, k]`` are batch positions of
other items for which (item, property, value) is not a true triple (-1 where none exists).
``lpm.value_ids`` / ``lpm.property_ids`` list the values and properties whose vectors the
loss needs; the mode's inputs carry them (token strings or cached features).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Optional

import torch

import kg.pyg  # noqa: F401  (before torch_geometric: see kg/pyg.py)
from torch_geometric.data import HeteroData

from k3m.model.batch_graph import MENTIONS, VALUE_MENTION, Pairs
from k3m.model.inputs import ModeInputs, ModeTargets


@dataclass
class LPMTargets:
    positives: Pairs  # [Q] the graph's pairs, then the masked ones
    neg_value: torch.Tensor  # long [Q, K + R] global value ids, -1 = none
    neg_item: torch.Tensor  # long [Q, K] batch positions, -1 = none
    value_ids: torch.Tensor  # long [U] sorted unique values of positives and negatives
    property_ids: torch.Tensor  # long [Up] sorted unique properties of the positives


@dataclass
class K3MBatch:
    item_index: torch.Tensor  # long [B], rows of the catalog build
    title_present: torch.Tensor  # bool [B]
    image_present: torch.Tensor  # bool [B]
    knowledge_present: torch.Tensor  # bool [B]
    graph: HeteroData  # the batch star graph (k3m.model.batch_graph), edge j == pair j
    inputs: ModeInputs  # what the encoder mode reads
    targets: Optional[ModeTargets] = None  # its pretraining targets (None: made without targets)
    lpm: Optional[LPMTargets] = None  # link prediction (None: made without targets)
    category: Optional[torch.Tensor] = None  # long [B] downstream label, -1 = unknown

    @property
    def batch_size(self) -> int:
        return int(self.item_index.shape[0])

    # -- views of the graph -----------------------------------------------------------
    @property
    def pairs(self) -> Pairs:
        """The pairs in the graph (masked pairs are not)."""
        return Pairs(self.pair_item, self.pair_property, self.pair_value)

    @property
    def pair_item(self) -> torch.Tensor:
        """long [P], the batch position of each pair's item."""
        return self.graph[MENTIONS].edge_index[0]

    @property
    def pair_property(self) -> torch.Tensor:
        """long [P], global property ids."""
        return self.graph[MENTIONS].edge_attr

    @property
    def pair_value(self) -> torch.Tensor:
        """long [P], global value ids."""
        return self.graph[VALUE_MENTION].value_id

    @property
    def pair_property_span(self) -> torch.Tensor:
        """long [P, 2], token [start, end) of each property in its item's knowledge stream."""
        return self.graph[MENTIONS].property_span

    @property
    def pair_value_span(self) -> torch.Tensor:
        """long [P, 2], token [start, end) of each value."""
        return self.graph[VALUE_MENTION].span

    # -- devices ---------------------------------------------------------------------
    def to(self, device, non_blocking: bool = False) -> "K3MBatch":
        return map_tensors(self, lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> "K3MBatch":
        return map_tensors(self, lambda t: t.pin_memory())


def map_tensors(value, fn: Callable):
    """``value`` with ``fn`` applied to every tensor and graph inside it (dataclasses, at any depth)."""
    if isinstance(value, (torch.Tensor, HeteroData)):
        return fn(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(value, **{f.name: map_tensors(getattr(value, f.name), fn)
                                             for f in dataclasses.fields(value) if f.init})
    return value
