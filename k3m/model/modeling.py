"""K3MModel: stem -> shared core -> heads.

- **stem** (one per encoder mode, :mod:`k3m.model.stems`): the batch's typed inputs -> the
  initial streams E of title, image and knowledge. Frozen encoders: cached features projected
  (``FeatureStem``); trainable ones: BERT and an image encoder (``TokenStem``);
- **core** (:class:`~k3m.model.core.K3MCore`, shared): co-attention -> IIFM -> pooled per
  modality -> item centre c -> structure aggregation over the batch star graph -> c*;
- **heads** (:mod:`k3m.model.heads`, a registry per mode keyed by name): the pretraining
  losses; ``TaskWeighting`` sums them.

See docs/model.md for the data flow, the config switches and the defects of the original
code this implementation avoids. Presence is explicit everywhere: a missing title, image or
knowledge text is masked out of attention, pooling, the item centre and the losses.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from encoders.image.cached import GRID_FEATURES
from encoders.weights import load_state_dict_strictly
from k3m.model.batch import K3MBatch
from k3m.model.configuration import CONFIG_NAME, K3MConfig
from k3m.model.core import K3MCore
from k3m.model.heads import HeadContext, TaskWeighting, build_heads, lpm_distance
from k3m.model.legacy_keys import upgrade_state_dict
from k3m.model.nn.kept_features import KeptFeatures
from k3m.model.stems import FeatureStem, TokenStem, build_stem

WEIGHTS_NAME = "model.safetensors"
RECONSTRUCTION = {"title": "mlm_title", "image": "mom"}  # the frozen heads that rebuild a modality from c*


@dataclass
class K3MOutput:
    item_center: torch.Tensor  # c [B, H]
    item_repr: torch.Tensor  # c* [B, H]
    item_vector: torch.Tensor  # [B, E] what an item is embedded as: c*, then the kept blocks (config.embedding_size)
    losses: dict[str, torch.Tensor] = field(default_factory=dict)  # per task, plus "loss" (weighted total)
    pooled: dict[str, torch.Tensor] = field(default_factory=dict)  # per modality, [B, H], zeros where absent
    present: dict[str, torch.Tensor] = field(default_factory=dict)  # per modality, bool [B]
    pair_attention: Optional[torch.Tensor] = None  # [P, heads] structure-aggregation weights


class K3MModel(nn.Module):
    def __init__(self, config: K3MConfig, load_pretrained_text: bool = True):
        """``load_pretrained_text``: copy ``config.text.pretrained_text_dir`` into the text
        encoder (from_pretrained passes False: its own weights already contain it)."""
        super().__init__()
        config.validate()
        self.config = config
        # built in this order (stem, core, heads): parameter initialisation draws from the
        # RNG, and the order keeps a seed's initial weights what they were
        self.stem = build_stem(config, load_pretrained_text)
        self.core = K3MCore(config)
        self.heads = build_heads(config, self.stem)
        self.task_weighting = TaskWeighting(config.loss)
        # the kept path (buffers only: no initialisation draws); fitted before pretraining
        kept = config.kept_dims
        self.kept = (KeptFeatures(kept, {"title": config.text.feature_size, "image": GRID_FEATURES,
                                         "knowledge": config.text.feature_size})
                     if any(kept.values()) else None)

    # -- the forward pass --------------------------------------------------------------
    def forward(self, batch: K3MBatch, compute_losses: bool = True) -> K3MOutput:
        """c, c* and (when ``compute_losses``) the losses of the tasks whose targets the
        batch carries. Visual tokens are MOM-masked only when losses are computed."""
        stem = self.stem(batch, compute_losses)
        core = self.core(stem.streams, batch.graph, lambda knowledge: self.stem.edge_properties(batch, knowledge))
        # what the frozen features show, pooled, and the consistency head's judgement of it: read
        # by the item vector and by the heads, computed once
        shown = FeatureStem.pooled_features(batch) if isinstance(self.stem, FeatureStem) else None
        judge = self.heads["consistency"] if "consistency" in self.heads else None
        own_logits = judge.logits(shown, core.item_repr) if judge is not None and (
            compute_losses or self.config.keep.distrust) else None
        item_vector = self.item_vector(batch, core.item_repr, shown, own_logits)
        losses = {}
        if compute_losses:
            ctx = HeadContext(batch, self.stem, stem.streams, stem.visual, core.fused, core.item_repr, self.kept,
                              shown, own_logits)
            for head in self.heads.values():
                losses.update(head.losses(ctx))
            if losses:
                losses["loss"] = self.task_weighting(losses)
        return K3MOutput(core.item_center, core.item_repr, item_vector, losses, core.pooled, core.present,
                         core.pair_attention)

    def item_vector(self, batch: K3MBatch, item_repr: torch.Tensor, shown=None, own_logits=None) -> torch.Tensor:
        """c* alone, or (with a kept path) c* then the kept blocks, each of unit length: a
        cosine over the item vector weighs c* and every modality the item has alike. An absent
        title or image is filled from c* by its reconstruction head (``keep.impute``), and with
        ``keep.distrust`` a shown one as far as the consistency head judges it another item's;
        an item without pairs has no knowledge block (zeros). ``shown`` / ``own_logits``: the
        pooled features and the head's logits when the caller has them already."""
        if self.kept is None:
            return item_repr
        pooled = shown if shown is not None else FeatureStem.pooled_features(batch)
        trust = {}
        if self.config.keep.distrust:  # a shown title or image judged another item's is filled from c* as well
            if own_logits is None:
                own_logits = self.heads["consistency"].logits(pooled, item_repr)
            trust = {name: torch.sigmoid(logit) for name, logit in own_logits.items()}
        features = {}
        for name in self.kept.dims:
            raw, present = pooled[name]
            head = self.heads[RECONSTRUCTION[name]] if name in RECONSTRUCTION and RECONSTRUCTION[name] in self.heads else None
            if self.config.keep.impute and head is not None:
                guess = head.net(item_repr)
                if name in trust:
                    own = trust[name].unsqueeze(-1)
                    raw = own * F.normalize(raw.float(), dim=-1) + (1 - own) * F.normalize(guess.float(), dim=-1)
                raw = torch.where(present.unsqueeze(-1), raw.to(item_repr.dtype), guess)
            features[name] = raw
        blocks = self.kept(features)
        parts = [item_repr] + [blocks[name] for name in self.kept.dims]
        return torch.cat([F.normalize(part.float(), dim=-1) for part in parts], dim=-1)

    # -- inference API -----------------------------------------------------------------
    @torch.no_grad()
    def encode_items(self, batch: K3MBatch) -> torch.Tensor:
        """The item vectors [B, E] (``config.embedding_size``) in eval mode (no dropout, no
        Gumbel noise, no masking), no losses."""
        return self.encode(batch).item_vector

    @torch.no_grad()
    def encode(self, batch: K3MBatch) -> K3MOutput:
        """The forward pass in eval mode, no losses: item vectors and c* (what the LPM scores)."""
        was_training = self.training
        self.eval()
        try:
            return self.forward(batch, compute_losses=False)
        finally:
            self.train(was_training)

    def property_vectors(self, features: torch.Tensor) -> torch.Tensor:
        """Frozen encoders: cached property-name features [N, F] -> LPM property vectors [N, H]."""
        return self._feature_stem().property_vectors(features)

    def value_vectors(self, features: torch.Tensor) -> torch.Tensor:
        """Frozen encoders: cached value features [N, F] -> LPM value vectors [N, H]."""
        return self._feature_stem().value_vectors(features)

    def encode_strings(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Trainable encoders: standalone property/value strings [N, L] -> mean-pooled text vectors [N, H]."""
        if not isinstance(self.stem, TokenStem):
            raise RuntimeError("encoders: frozen reads property and value features from the cache (property_vectors, value_vectors)")
        return self.stem.encode_strings(input_ids, attention_mask)

    def _feature_stem(self) -> FeatureStem:
        if not isinstance(self.stem, FeatureStem):
            raise RuntimeError("encoders: trainable encodes property and value strings (encode_strings)")
        return self.stem

    def lpm_score(self, item_repr: torch.Tensor, property_vec: torch.Tensor, value_vec: torch.Tensor) -> torch.Tensor:
        """``||c* + p - v||`` (lower = more plausible), broadcasting over leading dims: e.g.
        item_repr [B, 1, H], property_vec [B, 1, H], value_vec [1, V, H] -> [B, V]."""
        return lpm_distance(item_repr, property_vec, value_vec, self.config.lpm.norm)

    # -- checkpoints -------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path, tokenizer=None) -> Path:
        """Write ``k3m_config.json`` + ``model.safetensors`` (+ the tokenizer's files)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.config.save(directory)
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(state, str(directory / WEIGHTS_NAME), metadata={"format": "pt", "producer": "k3m"})
        if tokenizer is not None:
            tokenizer.save_pretrained(str(directory))
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path, strict: bool = True, map_location: str | torch.device = "cpu") -> "K3MModel":
        """Mirror of ``save_pretrained``. Any missing, unexpected or wrongly shaped key
        raises CheckpointMismatchError; ``strict=False`` loads the matching keys and logs
        the rest. Checkpoints written before the stem/core/heads split load too (their keys
        are renamed: k3m.model.legacy_keys)."""
        directory = Path(directory)
        weights = directory / WEIGHTS_NAME
        for needed in (directory / CONFIG_NAME, weights):
            if not needed.is_file():
                raise FileNotFoundError(f"{directory}: no {needed.name} (not a K3M checkpoint)")
        model = cls(K3MConfig.load(directory), load_pretrained_text=False)
        load_state_dict_strictly(model, upgrade_state_dict(load_file(str(weights))), weights, strict)
        return model.to(map_location)
