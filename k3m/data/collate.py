"""K3MCollator: a list of :class:`~k3m.data.dataset.ItemRecord` → :class:`~k3m.model.batch.K3MBatch`.

Tokenizes titles and knowledge texts (batched, through the fast tokenizer's Rust backend;
titles and property/value strings are cached per process), pads to the batch's longest
row (or to the config's caps with ``fixed_length``, for static shapes under torch.compile),
draws the pretraining targets (``targets=True``: MLM, MOM masks, LPM negatives) and builds
the batch's PyG star graph (k3m.model.batch.batch_graph), where the pairs live. Every random draw is keyed by (seed, epoch, build rows), never
by worker or call order.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from k3m.model.batch import K3MBatch, batch_graph
from encoders.image.region_file import RegionFeatureFile
from k3m.data.dataset import ItemRecord, K3MDataset
from k3m.data.frozen import FrozenCollator
from k3m.data.knowledge import backend, encode_knowledge
from k3m.data.masking import IGNORE, STREAM_KNOWLEDGE, STREAM_MOM, STREAM_NEGATIVES, STREAM_TITLE, item_rng, mlm_mask, mom_mask
from k3m.data.negatives import lpm_negatives


def make_collator(dataset: K3MDataset, tokenizer, config, targets: bool = True, fixed_length: bool = False):
    """The collator of ``config``'s model: cached features for frozen encoders
    (:class:`~k3m.data.frozen.FrozenCollator`), tokens and pixels otherwise."""
    if config.frozen:
        return FrozenCollator(dataset, config, targets=targets)
    return K3MCollator(dataset, tokenizer, config, targets=targets, fixed_length=fixed_length)


class K3MCollator:
    """``K3MCollator(dataset, tokenizer, config)(records) -> K3MBatch``.

    ``dataset`` gives the index, seed and corruption (its "+PKG" flag widens the title cap);
    ``tokenizer`` is a transformers fast tokenizer; ``config`` the model's K3MConfig (caps,
    masking, LPM negatives, num_visual_tokens). ``targets=False`` (embedding, evaluation):
    no masks, all labels -100, no LPM fields.
    """

    def __init__(self, dataset: K3MDataset, tokenizer, config, targets: bool = True, fixed_length: bool = False):
        self.index = dataset.index
        # image.kind "region": features of a region file, at the rows index_for attached
        self.region_file = config.image.region_feature_file if config.image.kind == "region" and config.use_image else None
        if self.region_file is not None and self.index.image_feature_rows is None:
            raise ValueError("a region model reads its images through k3m.data.index_for(build, config)")
        self.seed = dataset.seed
        self.targets = targets
        self.fixed_length = fixed_length
        text, self.masking, self.lpm = config.text, config.masking, config.lpm
        self.max_title = text.max_title_tokens
        if dataset.corruption.knowledge_as_title_text:  # "+PKG": the title carries the knowledge text too
            self.max_title += text.max_knowledge_tokens
        self.max_knowledge = text.max_knowledge_tokens
        self.max_string = text.max_string_tokens
        self.num_visual_tokens = config.num_visual_tokens
        self.text = backend(tokenizer)  # knowledge text: the caps are applied pair-wise
        self.title_text = backend(tokenizer, self.max_title)
        self.string_text = backend(tokenizer, self.max_string)
        self.pad_id, self.mask_id = int(tokenizer.pad_token_id), int(tokenizer.mask_token_id)
        special = set(tokenizer.all_special_ids)
        self.random_ids = np.array([i for i in range(len(tokenizer)) if i not in special], dtype=np.int64)
        self._images = None  # memory map, opened lazily in each worker process
        self._regions = None  # likewise the region file
        self._strings: dict[tuple[str, int], np.ndarray] = {}  # token ids of property/value strings
        self._titles: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # title text -> ids, normal-token mask

    def __getstate__(self):
        return {**self.__dict__, "_images": None, "_regions": None}

    @property
    def images(self) -> np.ndarray:
        if self._images is None:
            self._images = np.load(self.index.path / "images.npy", mmap_mode="r")
        return self._images

    def __call__(self, records: Sequence[ItemRecord]) -> K3MBatch:
        B = len(records)
        rows = np.array([r.row for r in records], dtype=np.int64)
        epoch = records[0].epoch
        title = self._titles_of(records)
        knowledge, pairs = self._knowledge(records)
        image = self._images_of(records)
        batch = K3MBatch(
            item_index=torch.from_numpy(rows),
            **title,
            **image,
            **knowledge,
            graph=batch_graph(
                torch.from_numpy(pairs["pair_item"]),
                torch.from_numpy(pairs["pair_property"]),
                torch.from_numpy(pairs["pair_value"]),
                torch.from_numpy(pairs["pair_property_span"]),
                torch.from_numpy(pairs["pair_value_span"]),
                num_items=B,
                item_index=torch.from_numpy(rows),
            ),
            category=torch.from_numpy(np.array([r.category for r in records], dtype=np.int64)),
        )
        if self.targets:
            self._lpm(batch, rows, pairs, epoch)
        return batch

    # -- text --------------------------------------------------------------------------
    def _pad(self, seqs: list[np.ndarray], cap: int) -> tuple[np.ndarray, np.ndarray]:
        width = cap if self.fixed_length else max([1] + [len(s) for s in seqs])
        ids = np.full((len(seqs), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(seqs), width), dtype=bool)
        for b, s in enumerate(seqs):
            ids[b, : len(s)] = s
            mask[b, : len(s)] = True
        return ids, mask

    def _mlm(self, ids: np.ndarray, candidates: np.ndarray, record: ItemRecord, stream: int, prob: float):
        if not self.targets or not candidates.any():
            return ids, np.full_like(ids, IGNORE)
        m = self.masking
        rng = item_rng(self.seed, record.epoch, record.row, stream)
        return mlm_mask(ids, candidates, rng, prob, m.mask_token_frac, m.random_token_frac, self.mask_id, self.random_ids)

    def _title_tokens(self, records) -> list:
        missing = sorted({r.title for r in records if r.title is not None and r.title not in self._titles})
        for text, enc in zip(missing, self.title_text.encode_batch(missing)):
            self._titles[text] = (np.array(enc.ids, dtype=np.int64), ~np.array(enc.special_tokens_mask, dtype=bool))
        return [self._titles[r.title] if r.title is not None else None for r in records]

    def _titles_of(self, records) -> dict:
        present = np.array([r.title is not None for r in records])
        seqs, labels = [], []
        for r, tokens in zip(records, self._title_tokens(records)):
            if tokens is None:
                seqs.append(np.zeros(0, np.int64))
                labels.append(np.zeros(0, np.int64))
                continue
            ids, lab = self._mlm(tokens[0], tokens[1], r, STREAM_TITLE, self.masking.title_mlm_prob)
            seqs.append(ids)
            labels.append(lab)
        ids, mask = self._pad(seqs, self.max_title)
        lab = np.full_like(ids, IGNORE)
        for b, l in enumerate(labels):
            lab[b, : len(l)] = l
        return {
            "title_input_ids": torch.from_numpy(ids),
            "title_attention_mask": torch.from_numpy(mask),
            "title_present": torch.from_numpy(present),
            "title_mlm_labels": torch.from_numpy(lab),
        }

    def _knowledge(self, records) -> tuple[dict, dict]:
        encs = encode_knowledge(self.text, [self.index.pair_strings(r.pairs) for r in records], self.max_knowledge)
        seqs, labels = [], []
        for r, e in zip(records, encs):
            ids = np.asarray(e.input_ids, dtype=np.int64)
            values = np.zeros(len(ids), dtype=bool)
            for a, z in e.value_spans:
                values[a:z] = True
            ids, lab = self._mlm(ids, values, r, STREAM_KNOWLEDGE, self.masking.knowledge_mlm_prob)
            seqs.append(ids)
            labels.append(lab)
        ids, mask = self._pad(seqs, self.max_knowledge)
        lab = np.full_like(ids, IGNORE)
        for b, l in enumerate(labels):
            lab[b, : len(l)] = l
        counts = np.array([e.num_pairs for e in encs], dtype=np.int64)
        kept = [r.pairs[: e.num_pairs] for r, e in zip(records, encs)]
        pairs = {
            "pair_item": np.repeat(np.arange(len(records), dtype=np.int64), counts),
            "pair_property": np.concatenate([k[:, 0] for k in kept]).astype(np.int64),
            "pair_value": np.concatenate([k[:, 1] for k in kept]).astype(np.int64),
            "pair_property_span": np.concatenate([e.property_spans for e in encs]).reshape(-1, 2),
            "pair_value_span": np.concatenate([e.value_spans for e in encs]).reshape(-1, 2),
        }
        text = {
            "knowledge_input_ids": torch.from_numpy(ids),
            "knowledge_attention_mask": torch.from_numpy(mask),
            "knowledge_present": torch.from_numpy(counts > 0),
            "knowledge_mlm_labels": torch.from_numpy(lab),
        }
        return text, pairs

    # -- image -------------------------------------------------------------------------
    def _images_of(self, records) -> dict:
        image_rows = np.array([r.image_row for r in records], dtype=np.int64)
        present = image_rows >= 0
        if self.region_file is not None:
            if self._regions is None:
                self._regions = RegionFeatureFile.open(self.region_file)
            file_rows = np.where(present, self.index.image_feature_rows[np.maximum(image_rows, 0)], -1)
            out = {**self._regions.read(file_rows), "image_pixels": None}
            real = out["region_mask"].numpy()
        else:
            store = self.images
            pixels = np.zeros((len(records),) + store.shape[1:], dtype=np.uint8)
            if present.any():
                pixels[present] = store[image_rows[present]]
            pixels = np.ascontiguousarray(pixels.transpose(0, 3, 1, 2))  # numpy: ~15x faster than torch here
            out = {"image_pixels": torch.from_numpy(pixels), "image_present": torch.from_numpy(present)}
            real = np.ones((len(records), self.num_visual_tokens), dtype=bool)
        token_mask = np.zeros((len(records), self.num_visual_tokens), dtype=bool)
        if self.targets:
            for b in np.flatnonzero(present):
                rng = item_rng(self.seed, records[b].epoch, records[b].row, STREAM_MOM)
                token_mask[b] = mom_mask(self.num_visual_tokens, rng, self.masking.mom_prob) & real[b]
        return {**out, "image_token_mask": torch.from_numpy(token_mask)}

    # -- LPM ---------------------------------------------------------------------------
    def _lpm(self, batch: K3MBatch, rows: np.ndarray, pairs: dict, epoch: int) -> None:
        index = self.index
        rng = np.random.default_rng([self.seed, epoch, STREAM_NEGATIVES, *rows.tolist()])
        item, prop, value = pairs["pair_item"], pairs["pair_property"], pairs["pair_value"]
        neg_value, neg_item = lpm_negatives(rng, index, self.lpm, rows, item, prop, value)
        value_ids = np.unique(np.concatenate([value, neg_value.ravel()]))
        prop_ids = np.unique(prop)
        batch.lpm_neg_value = torch.from_numpy(neg_value)
        batch.lpm_neg_item = torch.from_numpy(neg_item)
        batch.lpm_value_ids = torch.from_numpy(value_ids)
        batch.lpm_value_input_ids, batch.lpm_value_attention_mask = self._strings_of("value", value_ids, index.values)
        batch.lpm_property_ids = torch.from_numpy(prop_ids)
        batch.lpm_property_input_ids, batch.lpm_property_attention_mask = self._strings_of(
            "property", prop_ids, index.properties
        )

    def _strings_of(self, kind: str, ids: np.ndarray, names: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids of property/value strings encoded on their own (cached per process)."""
        missing = [int(i) for i in ids if (kind, int(i)) not in self._strings]
        for i, enc in zip(missing, self.string_text.encode_batch([names[i] for i in missing])):
            self._strings[(kind, i)] = np.array(enc.ids, dtype=np.int64)
        ids_, mask = self._pad([self._strings[(kind, int(i))] for i in ids], self.max_string)
        return torch.from_numpy(ids_), torch.from_numpy(mask)
