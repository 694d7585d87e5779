"""FeatureAdapter: the input adapter of frozen encoders (``encoders: frozen``), reading the
feature cache.

The dataset decides what each item shows (corruption hooks, modality switches); this adapter
looks the shown title and image up by build row and the kept pairs by (property, value) in
the build's :class:`~encoders.cache.BuildFeatures` (``index.features``, attached by
:func:`k3m.data.index_for`) and pads them. The knowledge stream has one token per pair (its
"property : value" vector), so a value mention's span is one token. No tokenizer runs: a
batch is a few memory-mapped lookups. Makes :class:`~k3m.model.inputs.FeatureInputs` and
:class:`~k3m.model.inputs.FeatureTargets`.

Pretraining targets (``targets=True``), each drawn per item keyed by (seed, epoch, row),
never by batch or worker (docs/model.md, "masked modelling on cached features"):

- the title is hidden (``title_hide_prob``) or replaced by another train item's
  (``title_swap_prob``); the target is the item's own mean title feature. Same for the image;
  with ``joint_swap_prob`` both come from one other item;
- whole pairs leave the knowledge stream and the graph (``pair_mask_prob``, at least one of
  an item with two or more); their values are the masked-pair targets and LPM positives.

"+PKG as text" (the dataset's ``title_pairs``): the pair vectors follow the title's tokens in
the title stream, the frozen analogue of appending the knowledge text to the title.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from k3m.data.adapters.base import Collated, InputAdapter, PairArrays
from k3m.data.dataset import ItemRecord, K3MDataset
from k3m.data.masking import STREAM_IMAGE_SWAP, STREAM_JOINT_SWAP, STREAM_PAIR_MASK, STREAM_TITLE_SWAP, item_rng
from k3m.data.padding import pad
from k3m.model.batch import LPMTargets
from k3m.model.batch_graph import Pairs
from k3m.model.inputs import FeatureInputs, FeatureTargets

DONOR_TRIES = 8


class FeatureAdapter(InputAdapter):
    def __init__(self, dataset: K3MDataset, tokenizer, config, targets: bool = True, fixed_length: bool = False):
        # ``tokenizer`` and ``fixed_length`` are not used: no text is tokenized here
        self.index = dataset.index
        if self.index.features is None:
            raise ValueError("frozen encoders read the feature cache: build the index with k3m.data.index_for(build, config)")
        self.features = self.index.features
        self.rows = dataset.rows  # donors of swapped titles / images come from the same items
        self.seed, self.targets = dataset.seed, targets
        self.masking = config.masking
        self.max_title = config.text.max_title_tokens
        self.use_title, self.use_image = config.use_title, config.use_image
        self.keeps_knowledge = config.kept_dims["knowledge"] > 0  # its own pairs' mean is a matching target
        self.text_dim = self.features.text_dim

    def collate(self, records: Sequence[ItemRecord]) -> Collated:
        shown = [self._corrupt(r) for r in records]
        title, title_mask = self._titles([t for t, _ in shown], records)
        knowledge, knowledge_mask, kept, masked = self._knowledge(records)
        shown_images = np.array([i for _, i in shown], dtype=np.int64)
        f = self.features
        image = torch.from_numpy(f.image_grid(shown_images).astype(np.float32)) if self.use_image else None
        property_ids = np.unique(np.concatenate([kept.property, masked.property]))
        inputs = FeatureInputs(torch.from_numpy(title), torch.from_numpy(title_mask), torch.from_numpy(knowledge),
                               torch.from_numpy(knowledge_mask), image, torch.from_numpy(property_ids),
                               torch.from_numpy(f.property_vectors[property_ids]))
        targets = self._targets(records, masked, shown) if self.targets else None
        return Collated(inputs, targets, title_mask.any(1), shown_images >= 0, knowledge_mask.any(1), kept, masked)

    def add_vocabulary(self, inputs: FeatureInputs, lpm: LPMTargets) -> None:
        if not torch.equal(lpm.property_ids, inputs.property_ids):
            raise AssertionError("LPM properties differ from the batch's pair properties")
        inputs.value_features = torch.from_numpy(self.features.value_vectors[lpm.value_ids.numpy()])

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

    def _titles(self, shown_rows: list[int], records) -> tuple[np.ndarray, np.ndarray]:
        f = self.features
        seqs = []
        for r, shown in zip(records, shown_rows):
            tokens = f.title_tokens(shown)[: self.max_title] if shown >= 0 else np.zeros((0, self.text_dim), np.float16)
            if r.title_pairs is not None and len(r.title_pairs):  # "+PKG as text"
                tokens = np.concatenate([tokens, f.pair_vectors(r.title_pairs[:, 0], r.title_pairs[:, 1])])
            seqs.append(tokens)
        return pad(seqs, fill=0.0, dtype=np.float32, tail=(self.text_dim,))

    def _knowledge(self, records) -> tuple[np.ndarray, np.ndarray, PairArrays, PairArrays]:
        """(pair vectors [B, P, F], mask, kept pairs with their slot as span, masked pairs)."""
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
        kept, slot = _flatten(kept_parts)
        masked, _ = _flatten(masked_parts)
        counts = np.bincount(kept.item, minlength=len(records)) if len(kept.item) else np.zeros(len(records), np.int64)
        width = int(counts.max()) if len(counts) and counts.max() > 0 else 1
        features = np.zeros((len(records), width, self.text_dim), np.float32)
        mask = np.zeros((len(records), width), dtype=bool)
        if len(kept.item):
            features[kept.item, slot] = self.features.pair_vectors(kept.property, kept.value)
            mask[kept.item, slot] = True
        one_token = np.stack([slot, slot + 1], axis=1) if len(slot) else np.zeros((0, 2), np.int64)
        kept.property_span = kept.value_span = one_token
        return features, mask, kept, masked

    def _targets(self, records, masked: PairArrays, shown: list[tuple[int, int]]) -> FeatureTargets:
        """``shown``: the (title row, image row) each item was shown (``_corrupt``)."""
        f = self.features
        title = title_present = image = image_present = title_own = image_own = None
        if self.use_title:
            own = np.array([r.row if r.title_row >= 0 else -1 for r in records], dtype=np.int64)
            title, title_present = torch.from_numpy(f.title_vectors(own)), torch.from_numpy(own >= 0)
            title_own = torch.tensor([t >= 0 and t == r.title_row for (t, _), r in zip(shown, records)])
        if self.use_image:
            own = np.array([r.row if r.image_row >= 0 else -1 for r in records], dtype=np.int64)
            image = torch.from_numpy(f.image_grid(own).astype(np.float32).mean(1))
            image_present = torch.from_numpy(own >= 0)
            image_own = torch.tensor([i >= 0 and i == r.image_row for (_, i), r in zip(shown, records)])
        pairs = Pairs(torch.from_numpy(masked.item), torch.from_numpy(masked.property), torch.from_numpy(masked.value))
        knowledge = torch.from_numpy(self._own_knowledge(records)) if self.keeps_knowledge else None
        return FeatureTargets(title, title_present, image, image_present, pairs, knowledge, title_own, image_own)

    def _own_knowledge(self, records) -> np.ndarray:
        """float32 [B, F] mean "property : value" vector of each item's pairs, masked ones too."""
        out = np.zeros((len(records), self.text_dim), np.float32)
        for b, r in enumerate(records):
            if len(r.pairs):
                out[b] = np.asarray(self.features.pair_vectors(r.pairs[:, 0], r.pairs[:, 1]), np.float32).mean(0)
        return out


def _flatten(parts: list[tuple[int, np.ndarray]]) -> tuple[PairArrays, np.ndarray]:
    """Per-item pair arrays -> flat pairs and each pair's slot within its item."""
    items = [np.full(len(p), b, dtype=np.int64) for b, p in parts]
    slots = [np.arange(len(p), dtype=np.int64) for _, p in parts]
    pairs = [p.reshape(-1, 2) for _, p in parts]
    table = np.concatenate(pairs).astype(np.int64) if pairs else np.zeros((0, 2), np.int64)
    flat = PairArrays(
        item=np.concatenate(items) if items else np.zeros(0, np.int64),
        property=np.ascontiguousarray(table[:, 0]),
        value=np.ascontiguousarray(table[:, 1]),
    )
    return flat, np.concatenate(slots) if slots else np.zeros(0, np.int64)
