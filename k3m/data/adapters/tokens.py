"""TokenAdapter: the input adapter of trainable encoders (``encoders: trainable``).

Tokenizes titles and knowledge texts (batched, through the fast tokenizer's Rust backend;
titles and property/value strings are cached per process), pads to the batch's longest row
(or to the config's caps with ``fixed_length``, for static shapes under torch.compile), and
reads images as pixels from the build's image store or as detector regions from a region
feature file (``image.kind: region``). Targets (``targets=True``): MLM on title tokens and on
the knowledge text's value tokens, the MOM mask of every present image; the LPM's property
and value strings are tokenized on their own. Makes :class:`~k3m.model.inputs.TokenInputs`
and :class:`~k3m.model.inputs.TokenTargets`.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from encoders.image.region_file import RegionFeatureFile
from k3m.data.adapters.base import Collated, InputAdapter, PairArrays
from k3m.data.dataset import ItemRecord, K3MDataset
from k3m.data.knowledge import backend, encode_knowledge
from k3m.data.masking import IGNORE, STREAM_KNOWLEDGE, STREAM_MOM, STREAM_TITLE, item_rng, mlm_mask, mom_mask
from k3m.data.padding import pad
from k3m.model.batch import LPMTargets
from k3m.model.inputs import PixelImages, RegionImages, TokenInputs, TokenSequences, TokenTargets


RESIZED = ("patch", "cnn")  # pixel encoders that read exactly image.image_size (efficientnet resizes itself)


def resize_pixels(pixels: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 [B, 3, H, W] -> uint8 [B, 3, size, size], bilinear with antialiasing."""
    resized = torch.nn.functional.interpolate(pixels.float(), size=(size, size), mode="bilinear", antialias=True,
                                              align_corners=False)
    return resized.round().clamp(0, 255).to(torch.uint8)


class TokenAdapter(InputAdapter):
    """``dataset`` gives the index, seed and corruption (its "+PKG" flag widens the title
    cap); ``tokenizer`` is a transformers fast tokenizer; ``config`` the model's K3MConfig
    (caps, masking, num_visual_tokens)."""

    def __init__(self, dataset: K3MDataset, tokenizer, config, targets: bool = True, fixed_length: bool = False):
        if tokenizer is None:
            raise ValueError("trainable encoders read token ids: the collator needs the model's tokenizer")
        self.index = dataset.index
        self.use_image = config.use_image
        self.image_kind, self.image_size = config.image.kind, config.image.image_size
        # image.kind "region": features of a region file, at the rows index_for attached
        self.region_file = config.image.region_feature_file if config.image.kind == "region" and config.use_image else None
        if self.region_file is not None and self.index.image_feature_rows is None:
            raise ValueError("a region model reads its images through k3m.data.index_for(build, config)")
        self.seed = dataset.seed
        self.targets = targets
        self.fixed_length = fixed_length
        text, self.masking = config.text, config.masking
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

    def collate(self, records: Sequence[ItemRecord]) -> Collated:
        title, title_labels, title_present = self._titles_of(records)
        knowledge, knowledge_labels, knowledge_present, pairs = self._knowledge(records)
        image, visual_mask, image_present = self._images_of(records)
        targets = TokenTargets(title_labels, knowledge_labels, visual_mask) if self.targets else None
        return Collated(TokenInputs(title, knowledge, image), targets, title_present, image_present, knowledge_present,
                        pairs, PairArrays.empty())

    def add_vocabulary(self, inputs: TokenInputs, lpm: LPMTargets) -> None:
        inputs.values = self._strings_of("value", lpm.value_ids.numpy(), self.index.values)
        inputs.properties = self._strings_of("property", lpm.property_ids.numpy(), self.index.properties)

    # -- text --------------------------------------------------------------------------
    def _sequences(self, seqs: list[np.ndarray], labels: list[np.ndarray], cap: int) -> tuple[TokenSequences, torch.Tensor]:
        ids, mask = pad(seqs, cap if self.fixed_length else None, fill=self.pad_id)
        lab, _ = pad(labels, ids.shape[1], fill=IGNORE)
        return TokenSequences(torch.from_numpy(ids), torch.from_numpy(mask)), torch.from_numpy(lab)

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

    def _titles_of(self, records):
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
        title, labels = self._sequences(seqs, labels, self.max_title)
        return title, labels, present

    def _knowledge(self, records):
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
        knowledge, labels = self._sequences(seqs, labels, self.max_knowledge)
        counts = np.array([e.num_pairs for e in encs], dtype=np.int64)
        kept = [r.pairs[: e.num_pairs] for r, e in zip(records, encs)]
        pairs = PairArrays(
            item=np.repeat(np.arange(len(records), dtype=np.int64), counts),
            property=np.concatenate([k[:, 0] for k in kept]).astype(np.int64),
            value=np.concatenate([k[:, 1] for k in kept]).astype(np.int64),
            property_span=np.concatenate([e.property_spans for e in encs]).reshape(-1, 2),
            value_span=np.concatenate([e.value_spans for e in encs]).reshape(-1, 2),
        )
        return knowledge, labels, counts > 0, pairs

    def _strings_of(self, kind: str, ids: np.ndarray, names: list[str]) -> TokenSequences:
        """Token ids of property/value strings encoded on their own (cached per process)."""
        missing = [int(i) for i in ids if (kind, int(i)) not in self._strings]
        for i, enc in zip(missing, self.string_text.encode_batch([names[i] for i in missing])):
            self._strings[(kind, i)] = np.array(enc.ids, dtype=np.int64)
        ids_, mask = pad([self._strings[(kind, int(i))] for i in ids], self.max_string if self.fixed_length else None,
                         fill=self.pad_id)
        return TokenSequences(torch.from_numpy(ids_), torch.from_numpy(mask))

    # -- image -------------------------------------------------------------------------
    def _images_of(self, records):
        """(pixels or regions, MOM mask [B, Nv], presence)."""
        image_rows = np.array([r.image_row for r in records], dtype=np.int64)
        present = image_rows >= 0
        B = len(records)
        if not self.use_image:
            return None, torch.zeros((B, self.num_visual_tokens), dtype=torch.bool), present
        if self.region_file is not None:
            if self._regions is None:
                self._regions = RegionFeatureFile.open(self.region_file)
            file_rows = np.where(present, self.index.image_feature_rows[np.maximum(image_rows, 0)], -1)
            regions = self._regions.read(file_rows)
            image = RegionImages(**{k: torch.from_numpy(v) for k, v in regions.items()})
            real = regions["mask"]
            present = real.any(-1)
        else:
            store = self.images
            pixels = np.zeros((B,) + store.shape[1:], dtype=np.uint8)
            if present.any():
                pixels[present] = store[image_rows[present]]
            pixels = torch.from_numpy(np.ascontiguousarray(pixels.transpose(0, 3, 1, 2)))  # numpy: ~15x faster than torch here
            if self.image_size not in (None, pixels.shape[-1]) and self.image_kind in RESIZED:
                pixels = resize_pixels(pixels, self.image_size)  # a build stores the size its photos call for
            image = PixelImages(pixels)
            real = np.ones((B, self.num_visual_tokens), dtype=bool)
        visual_mask = np.zeros((B, self.num_visual_tokens), dtype=bool)
        if self.targets:
            for b in np.flatnonzero(present):
                rng = item_rng(self.seed, records[b].epoch, records[b].row, STREAM_MOM)
                visual_mask[b] = mom_mask(self.num_visual_tokens, rng, self.masking.mom_prob) & real[b]
        return image, torch.from_numpy(visual_mask), present

