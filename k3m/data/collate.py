"""K3MCollator: a list of :class:`~k3m.data.dataset.ItemRecord` → :class:`~k3m.model.batch.K3MBatch`.

One collator for both encoder modes. The mode's input adapter (:mod:`k3m.data.adapters`:
token ids and pixels for trainable encoders, cached features for frozen ones) makes its typed
input sub-batch, its targets, the items' presence and the pairs each item keeps; what every
mode shares is made here once: the batch star graph of the pairs
(:func:`k3m.model.batch_graph.batch_graph`), the LPM targets and the labels. Every random
draw is keyed by (seed, epoch, build rows), never by worker or call order.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from k3m.data.adapters import adapter_for
from k3m.data.adapters.base import PairArrays
from k3m.data.dataset import ItemRecord, K3MDataset
from k3m.data.masking import STREAM_NEGATIVES
from k3m.data.negatives import lpm_negatives
from k3m.model.batch import K3MBatch, LPMTargets
from k3m.model.batch_graph import Pairs, batch_graph


def make_collator(dataset: K3MDataset, tokenizer, config, targets: bool = True, fixed_length: bool = False) -> "K3MCollator":
    """The collator of ``config``'s model (the same as ``K3MCollator(...)``)."""
    return K3MCollator(dataset, tokenizer, config, targets=targets, fixed_length=fixed_length)


class K3MCollator:
    """``K3MCollator(dataset, tokenizer, config)(records) -> K3MBatch``.

    ``dataset`` gives the index, seed and corruption; ``tokenizer`` is the model's
    transformers fast tokenizer (trainable encoders; frozen ones need none); ``config`` the
    model's K3MConfig (its ``encoders`` picks the input adapter; caps, masking, LPM
    negatives). ``targets=False`` (embedding, evaluation): nothing masked, hidden or swapped,
    ``batch.targets`` and ``batch.lpm`` are None. ``fixed_length``: token rows padded to the
    caps (static shapes for torch.compile).
    """

    def __init__(self, dataset: K3MDataset, tokenizer, config, targets: bool = True, fixed_length: bool = False):
        self.index = dataset.index
        self.seed = dataset.seed
        self.targets = targets
        self.lpm = config.lpm
        self.adapter = adapter_for(config)(dataset, tokenizer, config, targets=targets, fixed_length=fixed_length)

    def __call__(self, records: Sequence[ItemRecord]) -> K3MBatch:
        rows = np.array([r.row for r in records], dtype=np.int64)
        part = self.adapter.collate(records)
        pairs = part.pairs
        graph = batch_graph(
            torch.from_numpy(pairs.item), torch.from_numpy(pairs.property), torch.from_numpy(pairs.value),
            torch.from_numpy(pairs.property_span), torch.from_numpy(pairs.value_span),
            num_items=len(records), item_index=torch.from_numpy(rows),
        )
        batch = K3MBatch(
            item_index=torch.from_numpy(rows),
            title_present=torch.from_numpy(part.title_present),
            image_present=torch.from_numpy(part.image_present),
            knowledge_present=torch.from_numpy(part.knowledge_present),
            graph=graph,
            inputs=part.inputs,
            targets=part.targets,
            category=torch.from_numpy(np.array([r.category for r in records], dtype=np.int64)),
        )
        if self.targets:
            batch.lpm = self._lpm(rows, records[0].epoch, pairs, part.masked)
            self.adapter.add_vocabulary(batch.inputs, batch.lpm)
        return batch

    def _lpm(self, rows: np.ndarray, epoch: int, pairs: PairArrays, masked: PairArrays) -> LPMTargets:
        """Positives: the graph's pairs, then the masked ones; negatives drawn by one
        generator keyed by (seed, epoch, the batch's rows)."""
        rng = np.random.default_rng([self.seed, epoch, STREAM_NEGATIVES, *rows.tolist()])
        item = np.concatenate([pairs.item, masked.item])
        prop = np.concatenate([pairs.property, masked.property])
        value = np.concatenate([pairs.value, masked.value])
        neg_value, neg_item = lpm_negatives(rng, self.index, self.lpm, rows, item, prop, value)
        value_ids = np.unique(np.concatenate([value, neg_value[neg_value >= 0]]))
        return LPMTargets(
            positives=Pairs(torch.from_numpy(item), torch.from_numpy(prop), torch.from_numpy(value)),
            neg_value=torch.from_numpy(neg_value),
            neg_item=torch.from_numpy(neg_item),
            value_ids=torch.from_numpy(value_ids),
            property_ids=torch.from_numpy(np.unique(prop)),
        )
