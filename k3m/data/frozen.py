"""FrozenCollator: ItemRecords -> K3MBatch for frozen encoders, read from the feature cache.

The dataset decides what each item shows (corruption hooks, modality switches); this
collator looks the shown title and image up by build row and the kept pairs by (property,
value) in the build's :class:`~encoders.cache.BuildFeatures` (``index.features``, attached by
:func:`k3m.data.index_for`), pads, and builds the batch's star graph. The knowledge stream
has one token per pair (its "property : value" vector), so a value node's span is one
token. No tokenizer runs: a batch is a few memory-mapped lookups.

Pretraining targets (``targets=True``), each drawn per item keyed by (seed, epoch, row),
never by batch or worker (docs/model.md, "masked modelling on cached features"):

- the title is hidden (``title_hide_prob``) or replaced by another train item's
  (``title_swap_prob``); the target is the item's own mean title feature. Same for the image;
- whole pairs leave the knowledge stream and the graph (``pair_mask_prob``, at least one of
  an item with two or more); their values are the masked-pair targets and LPM positives;
- LPM negatives as with trainable encoders (k3m.data.negatives.lpm_negatives).

"+PKG as text" (the dataset's ``title_pairs``): the pair vectors follow the title's tokens in
the title stream, the frozen analogue of appending the knowledge text to the title.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from k3m.data.dataset import ItemRecord, K3MDataset
from k3m.data.masking import (STREAM_IMAGE_SWAP, STREAM_JOINT_SWAP, STREAM_NEGATIVES, STREAM_PAIR_MASK, STREAM_TITLE_SWAP,
                              item_rng)
from k3m.data.negatives import lpm_negatives
from k3m.model.batch import K3MBatch, batch_graph

DONOR_TRIES = 8


class FrozenCollator:
    def __init__(self, dataset: K3MDataset, config, targets: bool = True):
        self.index = dataset.index
        if self.index.features is None:
            raise ValueError("frozen encoders read the feature cache: build the index with k3m.data.index_for(build, config)")
        self.features = self.index.features
        self.rows = dataset.rows  # donors of swapped titles / images come from the same items
        self.seed, self.targets = dataset.seed, targets
        self.masking, self.lpm = config.masking, config.lpm
        self.max_title = config.text.max_title_tokens
        self.use_title, self.use_image, self.use_knowledge = config.use_title, config.use_image, config.use_knowledge
        self.num_visual_tokens = config.num_visual_tokens if config.use_image else 0
        self.text_dim = self.features.text_dim

    def __call__(self, records: Sequence[ItemRecord]) -> K3MBatch:
        B = len(records)
        rows = np.array([r.row for r in records], dtype=np.int64)
        epoch = records[0].epoch
        shown = [self._corrupt(r) for r in records]
        title = self._titles(records, [t for t, _ in shown])
        knowledge, pairs, masked = self._knowledge(records)
        image = self._images(records, np.array([i for _, i in shown], dtype=np.int64))
        P = len(pairs["item"])
        one_token = np.stack([pairs["slot"], pairs["slot"] + 1], axis=1) if P else np.zeros((0, 2), np.int64)
        used_props = np.unique(np.concatenate([pairs["property"], masked["property"]]))
        batch = K3MBatch(
            item_index=torch.from_numpy(rows),
            **title,
            **image,
            **knowledge,
            graph=batch_graph(
                torch.from_numpy(pairs["item"]), torch.from_numpy(pairs["property"]), torch.from_numpy(pairs["value"]),
                torch.from_numpy(one_token), torch.from_numpy(one_token), num_items=B, item_index=torch.from_numpy(rows),
            ),
            category=torch.from_numpy(np.array([r.category for r in records], dtype=np.int64)),
            lpm_property_ids=torch.from_numpy(used_props),
            property_features=torch.from_numpy(self.features.property_vectors[used_props]),
        )
        if self.targets:
            batch.masked_pair_item = torch.from_numpy(masked["item"])
            batch.masked_pair_property = torch.from_numpy(masked["property"])
            batch.masked_pair_value = torch.from_numpy(masked["value"])
            self._lpm(batch, rows, pairs, masked, epoch)
        return batch

    # -- what each item shows ---------------------------------------------------------------
    def _donor(self, rng: np.random.Generator, row: int, has) -> int:
        """Another item of the dataset that has the modality (-1 if none was found)."""
        for _ in range(DONOR_TRIES):
            donor = int(self.rows[rng.integers(len(self.rows))])
            if donor != row and has(donor):
                return donor
        return -1

    def _shown(self, record: ItemRecord, shown: int, stream: int, hide: float, swap: float, has) -> int:
        """The row whose modality the item shows after the pretraining corruption."""
        if not self.targets or shown < 0:
            return shown
        rng = item_rng(self.seed, record.epoch, record.row, stream)
        draw = rng.random()
        if draw < hide:
            return -1
        if draw < hide + swap:
            donor = self._donor(rng, record.row, has)
            return donor if donor >= 0 else shown
        return shown

    def _corrupt(self, record: ItemRecord) -> tuple[int, int]:
        """(title row, image row) the item shows in pretraining: both swapped for one other
        item's (``joint_swap_prob``, a listing showing another product's page), else each
        hidden or swapped on its own."""
        f, m = self.features, self.masking
        if not self.targets:
            return record.title_row, record.image_row
        if record.title_row >= 0 and record.image_row >= 0 and m.joint_swap_prob > 0:
            rng = item_rng(self.seed, record.epoch, record.row, STREAM_JOINT_SWAP)
            if rng.random() < m.joint_swap_prob:
                donor = self._donor(rng, record.row, lambda d: f.title_rows[d] >= 0 and self.index.has_image[d])
                if donor >= 0:
                    return donor, donor
        title = self._shown(record, record.title_row, STREAM_TITLE_SWAP, m.title_hide_prob, m.title_swap_prob,
                            lambda d: f.title_rows[d] >= 0)
        image = self._shown(record, record.image_row, STREAM_IMAGE_SWAP, m.image_hide_prob, m.image_swap_prob,
                            lambda d: self.index.has_image[d])
        return title, image

    def _titles(self, records, shown_rows: list[int]) -> dict:
        f = self.features
        seqs = []
        for r, shown in zip(records, shown_rows):
            tokens = f.title_tokens(shown)[: self.max_title] if shown >= 0 else np.zeros((0, self.text_dim), np.float16)
            if r.title_pairs is not None and len(r.title_pairs):  # "+PKG as text"
                tokens = np.concatenate([tokens, f.pair_vectors(r.title_pairs[:, 0], r.title_pairs[:, 1])])
            seqs.append(tokens)
        features, mask = _pad(seqs, self.text_dim)
        out = {"title_features": torch.from_numpy(features), "title_attention_mask": torch.from_numpy(mask),
               "title_present": torch.from_numpy(mask.any(1))}
        if self.targets and self.use_title:
            own = np.array([r.row if r.title_row >= 0 else -1 for r in records], dtype=np.int64)
            out["title_target"] = torch.from_numpy(f.title_vectors(own))
            out["title_target_present"] = torch.from_numpy(own >= 0)
        return out

    def _images(self, records, shown: np.ndarray) -> dict:
        f = self.features
        out = {"image_present": torch.from_numpy(shown >= 0)}
        if self.use_image:
            out["image_features"] = torch.from_numpy(f.image_grid(shown).astype(np.float32))
            if self.targets:
                own = np.array([r.row if r.image_row >= 0 else -1 for r in records], dtype=np.int64)
                out["image_target"] = torch.from_numpy(f.image_grid(own).astype(np.float32).mean(1))
                out["image_target_present"] = torch.from_numpy(own >= 0)
        return out

    def _knowledge(self, records) -> tuple[dict, dict, dict]:
        """(batch fields, kept pairs with their slot in the stream, masked pairs)."""
        kept_parts, masked_parts = [], []
        for b, r in enumerate(records):
            pairs = r.pairs
            masked = np.zeros(len(pairs), dtype=bool)
            if self.targets and len(pairs):
                rng = item_rng(self.seed, r.epoch, r.row, STREAM_PAIR_MASK)
                masked = rng.random(len(pairs)) < self.masking.pair_mask_prob
                if len(pairs) >= 2 and not masked.any():
                    masked[rng.integers(len(pairs))] = True
            kept_parts.append((b, pairs[~masked]))
            masked_parts.append((b, pairs[masked]))
        kept = _flatten(kept_parts)
        masked = _flatten(masked_parts)
        counts = np.bincount(kept["item"], minlength=len(records)) if len(kept["item"]) else np.zeros(len(records), np.int64)
        width = int(counts.max()) if len(counts) and counts.max() > 0 else 1
        features = np.zeros((len(records), width, self.text_dim), np.float32)
        mask = np.zeros((len(records), width), dtype=bool)
        if len(kept["item"]):
            features[kept["item"], kept["slot"]] = self.features.pair_vectors(kept["property"], kept["value"])
            mask[kept["item"], kept["slot"]] = True
        fields = {"knowledge_features": torch.from_numpy(features), "knowledge_attention_mask": torch.from_numpy(mask),
                  "knowledge_present": torch.from_numpy(counts > 0)}
        return fields, kept, masked

    # -- LPM -------------------------------------------------------------------------------------
    def _lpm(self, batch: K3MBatch, rows: np.ndarray, pairs: dict, masked: dict, epoch: int) -> None:
        rng = np.random.default_rng([self.seed, epoch, STREAM_NEGATIVES, *rows.tolist()])
        item = np.concatenate([pairs["item"], masked["item"]])
        prop = np.concatenate([pairs["property"], masked["property"]])
        value = np.concatenate([pairs["value"], masked["value"]])
        neg_value, neg_item = lpm_negatives(rng, self.index, self.lpm, rows, item, prop, value)
        value_ids = np.unique(np.concatenate([value, neg_value[neg_value >= 0]]))
        batch.lpm_neg_value = torch.from_numpy(neg_value)
        batch.lpm_neg_item = torch.from_numpy(neg_item)
        batch.lpm_value_ids = torch.from_numpy(value_ids)
        batch.value_features = torch.from_numpy(self.features.value_vectors[value_ids])


def _flatten(parts: list[tuple[int, np.ndarray]]) -> dict:
    """Per-item pair arrays -> flat item / slot / property / value arrays."""
    items = [np.full(len(p), b, dtype=np.int64) for b, p in parts]
    slots = [np.arange(len(p), dtype=np.int64) for _, p in parts]
    pairs = [p.reshape(-1, 2) for _, p in parts]
    table = np.concatenate(pairs).astype(np.int64) if pairs else np.zeros((0, 2), np.int64)
    return {
        "item": np.concatenate(items) if items else np.zeros(0, np.int64),
        "slot": np.concatenate(slots) if slots else np.zeros(0, np.int64),
        "property": np.ascontiguousarray(table[:, 0]),
        "value": np.ascontiguousarray(table[:, 1]),
    }


def _pad(seqs: list[np.ndarray], dim: int) -> tuple[np.ndarray, np.ndarray]:
    width = max([1] + [len(s) for s in seqs])
    out = np.zeros((len(seqs), width, dim), np.float32)
    mask = np.zeros((len(seqs), width), dtype=bool)
    for b, s in enumerate(seqs):
        out[b, : len(s)] = s
        mask[b, : len(s)] = True
    return out, mask
