"""Item vectors c* of a pretrained model, on clean or corrupted inputs.

:class:`ItemEncoder` wraps a model, its tokenizer and the build's :class:`CatalogIndex`. A
corruption plan (anything with ``items``, ``title_source`` and ``image_source`` arrays, e.g.
the evaluation's ``CorruptionPlan``) reaches the model only through the data pipeline's
hooks (``Corruption.title_source``/``image_source``), so corrupted inputs are built exactly
like clean ones. The model's modality switches (``use_title`` ...) and the
"+PKG as text" flag are applied by the same dataset, as in pretraining. Knowledge input is
always the train triples only (held-out facts never reach a model).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from etl.errors import InvalidValue
from etl.string_arrays import OPTIONAL_STRINGS
from k3m.data import CatalogIndex, Corruption, K3MDataset, make_collator


@dataclass
class ItemEncoder:
    model: object  # k3m.model.K3MModel
    tokenizer: object
    index: CatalogIndex
    knowledge_as_title_text: bool = False
    batch_size: int = 128
    seed: int = 0

    @property
    def config(self):
        return self.model.config

    def dataset(self, rows: np.ndarray, plan=None) -> K3MDataset:
        if plan is None:
            corruption = Corruption(knowledge_as_title_text=self.knowledge_as_title_text)
        else:
            corruption = Corruption.for_items(
                self.index.num_items, plan.items, plan.title_source, plan.image_source,
                knowledge_as_title_text=self.knowledge_as_title_text,
            )
        cfg = self.config
        return K3MDataset(
            self.index, rows, max_pairs=cfg.text.max_pairs, seed=self.seed, pair_order="fixed",
            use_title=cfg.use_title, use_image=cfg.use_image, use_knowledge=cfg.use_knowledge, corruption=corruption,
        )

    def batches(self, rows: np.ndarray, plan=None) -> Iterator:
        dataset = self.dataset(rows, plan)
        collate = make_collator(dataset, self.tokenizer, self.config, targets=False)
        device = next(self.model.parameters()).device
        for start in range(0, len(rows), self.batch_size):
            yield collate([dataset[int(r)] for r in rows[start : start + self.batch_size]]).to(device)

    def input_digests(self, rows: np.ndarray, images, image_digests=None) -> np.ndarray:
        """Per row, a digest of everything the model reads of the item (the title shown, the
        pairs in the order given, the image): equal digests under the same weights mean equal
        c*. The image counts by its file digest where the build has one (its pixels are
        decoded from those bytes once, and an update copies them when the bytes are the
        same), else by its pixels. None where that is not known (region feature files).
        A StringDType array (hex), filled row by row: no Python object per item is kept."""
        out = np.full(len(rows), None, dtype=OPTIONAL_STRINGS)
        if self.config.use_image and self.config.image.kind == "region":
            return out
        dataset = self.dataset(rows)
        for n, row in enumerate(np.asarray(rows).tolist()):
            record = dataset[row]
            digest = hashlib.blake2b(repr((record.title, self.index.pair_strings(record.pairs))).encode(), digest_size=16)
            if record.image_row >= 0:
                known = image_digests[record.image_row] if image_digests is not None else None
                digest.update(known.encode() if isinstance(known, str) else np.ascontiguousarray(images[record.image_row]).tobytes())
            out[n] = digest.hexdigest()
        return out

    @torch.no_grad()
    def encode(self, rows: np.ndarray, plan=None) -> torch.Tensor:
        """float [len(rows), E] item vectors (``config.embedding_size``: c*, then the kept
        blocks) in eval mode, in the order of ``rows``."""
        return self.encode_both(rows, plan)[0]

    @torch.no_grad()
    def encode_repr(self, rows: np.ndarray, plan=None) -> torch.Tensor:
        """float [len(rows), H] c* alone: what the LPM scores (``lpm_scorer``)."""
        return self.encode_both(rows, plan)[1]

    @torch.no_grad()
    def encode_both(self, rows: np.ndarray, plan=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(item vectors [N, E], c* [N, H]) in one pass."""
        vectors, reprs = [], []
        for batch in self.batches(rows, plan):
            out = self.model.encode(batch)
            vectors.append(out.item_vector.float().cpu())
            reprs.append(out.item_repr.float().cpu())
        if not vectors:
            return torch.empty(0, self.config.embedding_size), torch.empty(0, self.config.hidden_size)
        return torch.cat(vectors), torch.cat(reprs)

    def encode_train(self, rows: np.ndarray, plan=None) -> torch.Tensor:
        """c* of one mini-batch with gradients, in the model's current mode (fine-tuning)."""
        dataset = self.dataset(rows, plan)
        batch = make_collator(dataset, self.tokenizer, self.config, targets=False)([dataset[int(r)] for r in rows])
        return self.model(batch.to(next(self.model.parameters()).device), compute_losses=False).item_vector

    # -- LPM scoring ------------------------------------------------------------------
    @torch.no_grad()
    def string_vectors(self, names: list[str]) -> torch.Tensor:
        """Property/value strings encoded on their own, as the LPM saw them in pretraining."""
        device = next(self.model.parameters()).device
        out = []
        for start in range(0, len(names), 512):
            enc = self.tokenizer(
                names[start : start + 512], truncation=True, max_length=self.config.text.max_string_tokens,
                padding=True, return_tensors="pt",
            )
            mask = enc["attention_mask"].bool().to(device)
            out.append(self.model.encode_strings(enc["input_ids"].to(device), mask).float().cpu())
        return torch.cat(out)

    @torch.no_grad()
    def property_vectors(self) -> torch.Tensor:
        """LPM vectors [P, H] of the index's properties (frozen encoders: their cached features
        through the model's projection; otherwise the names encoded on their own)."""
        if self.config.frozen:
            device = next(self.model.parameters()).device
            return self.model.property_vectors(torch.from_numpy(self.index.features.property_vectors).to(device)).float().cpu()
        return self.string_vectors(self.index.properties)

    @torch.no_grad()
    def value_vectors(self) -> torch.Tensor:
        """LPM vectors [V, H] of the index's values."""
        if self.config.frozen:
            device = next(self.model.parameters()).device
            return self.model.value_vectors(torch.from_numpy(self.index.features.value_vectors).to(device)).float().cpu()
        return self.string_vectors(self.index.values)

    def lpm_scorer(self, rows: np.ndarray, vectors: torch.Tensor, chunk: int = 64):
        """``score(items, props) -> [Q, V]`` = −‖c* + p − v‖ over every value (higher = better),
        for items among ``rows`` (sorted) whose c* are ``vectors`` (``encode_repr``)."""
        if not self.config.use_knowledge:
            raise InvalidValue("LPM scoring needs a model pretrained with knowledge (use_knowledge=True)")
        props = self.property_vectors()
        values = self.value_vectors().unsqueeze(0)

        @torch.no_grad()
        def score(items: np.ndarray, prop_ids: np.ndarray) -> torch.Tensor:
            c = vectors[torch.from_numpy(np.searchsorted(rows, items))]
            p = props[torch.from_numpy(np.asarray(prop_ids, dtype=np.int64))]
            parts = [
                -self.model.lpm_score(c[i : i + chunk, None], p[i : i + chunk, None], values)
                for i in range(0, len(c), chunk)
            ]
            return torch.cat(parts)

        return score
