"""K3MModel: modal encoding -> co-attention interaction -> IIFM fusion -> item centre c ->
structure aggregation -> item representation c* -> pretraining losses.

See docs/model.md for the data flow, the config switches and the defects of the original
code this implementation avoids. Presence is explicit everywhere: a missing title, image or
knowledge text is masked out of attention, pooling, the item centre and the losses.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from encoders.image import CachedGridEncoder, build_image_encoder
from encoders.knowledge import encode_knowledge, encode_strings, span_mean
from encoders.pooling import masked_mean
from encoders.text import TextEncoder, load_pretrained_bert
from encoders.weights import load_state_dict_strictly
from kg.hetero import HAS, REV_HAS
from k3m.model.batch import K3MBatch
from k3m.model.configuration import CONFIG_NAME, K3MConfig
from k3m.model.heads import (MLMHead, MOMHead, ReconstructionHead, TaskWeighting, ValuePredictionHead, lpm_distance,
                             lpm_margin_loss, rows_of)
from k3m.model.nn import IIFM, CoAttentionStack, FeatureProjection, StructureAggregation, TransformerLayer, presence_mean


WEIGHTS_NAME = "model.safetensors"
TITLE_TOKEN_TYPE = 0
# co-attention pairs: name -> (stream a, stream b)
PAIRS = {
    "title_image": ("title", "image"),
    "knowledge_image": ("knowledge", "image"),
    "title_knowledge": ("title", "knowledge"),
}


@dataclass
class K3MOutput:
    item_center: torch.Tensor  # c [B, H]
    item_repr: torch.Tensor  # c* [B, H]
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
        hidden = config.hidden_size
        self.text_encoder = None
        if config.frozen:  # cached text features (width text.feature_size) projected into the streams
            features, dropout = config.text.feature_size, config.text.dropout
            self.title_in = FeatureProjection(features, hidden, dropout) if config.use_title else None
            if config.use_knowledge:
                self.knowledge_in = FeatureProjection(features, hidden, dropout)
                self.property_in = nn.Linear(features, hidden)  # property vectors: graph edges, LPM
                self.value_in = nn.Linear(features, hidden)  # value vectors: LPM, masked pair targets
        elif config.use_title or config.use_knowledge:
            self.text_encoder = TextEncoder(config.text)
            if config.text.pretrained_text_dir and load_pretrained_text:
                load_pretrained_bert(self.text_encoder, config.text.pretrained_text_dir)

        image_hidden = config.image.hidden_size
        if config.use_image:
            img = config.image
            self.image_encoder = build_image_encoder(img, frozen=config.frozen)
            self.image_layers = nn.ModuleList(TransformerLayer(image_hidden, img.num_heads, img.intermediate_size, img.dropout) for _ in range(img.num_layers))
            self.image_to_item = nn.Linear(image_hidden, hidden)

        used = {"title": config.use_title, "image": config.use_image, "knowledge": config.use_knowledge}
        widths = {"title": hidden, "image": image_hidden, "knowledge": hidden}
        co = config.co_attention
        self.co_attention = nn.ModuleDict()
        for name, (a, b) in PAIRS.items():
            if used[a] and used[b] and getattr(co, name):
                self.co_attention[name] = CoAttentionStack(
                    widths[a], widths[b], getattr(co, f"{name}_layers"), co.hidden_size, co.num_heads, co.intermediate_size, co.dropout
                )
        self.fusion = nn.ModuleDict()
        for modality, on in used.items():
            if on:
                candidates = 1 + sum(modality in PAIRS[name] for name in self.co_attention)
                self.fusion[modality] = IIFM(widths[modality], candidates, config.fusion.iifm, config.fusion.gumbel_tau)

        st = config.structure
        self.structure = (
            StructureAggregation(hidden, st.heads, st.negative_slope, st.dropout) if config.use_knowledge and config.structure_aggregation else None
        )

        weights = config.loss
        self.mlm_head = self.mom_head = None
        if config.frozen:  # masking at levels the cache cannot leak: whole modalities, whole pairs
            self.title_head = ReconstructionHead(hidden, config.text.feature_size) if config.use_title and weights.mlm_title > 0 else None
            self.image_head = ReconstructionHead(hidden, CachedGridEncoder.feature_width) if config.use_image and weights.mom > 0 else None
            self.value_head = ValuePredictionHead(hidden) if config.use_knowledge and weights.mlm_knowledge > 0 else None
        else:
            wants_mlm = (config.use_title and weights.mlm_title > 0) or (config.use_knowledge and weights.mlm_knowledge > 0)
            self.mlm_head = MLMHead(hidden, config.text.vocab_size) if wants_mlm else None
            if config.use_image and weights.mom > 0:
                target_dim = config.image.num_region_classes if config.image.kind == "region" else self.image_encoder.feature_dim
                self.mom_head = MOMHead(image_hidden, target_dim, self.image_encoder.target_kind)
        self.task_weighting = TaskWeighting(weights)

    # -- the forward pass --------------------------------------------------------------
    def forward(self, batch: K3MBatch, compute_losses: bool = True) -> K3MOutput:
        """c, c* and (when ``compute_losses``) the losses of the tasks whose targets the
        batch carries. Visual tokens are MOM-masked only when losses are computed."""
        cfg = self.config
        streams: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}  # initial E, mask, present
        visual = None
        if cfg.use_title:
            present = batch.title_present
            mask = batch.title_attention_mask & present.unsqueeze(-1)
            if cfg.frozen:
                tokens = self.title_in(batch.title_features)
            else:
                tokens = self.text_encoder(batch.title_input_ids, mask, token_type=TITLE_TOKEN_TYPE)
            streams["title"] = (tokens, mask, present & mask.any(-1))
        if cfg.use_image:
            mom_mask = batch.image_token_mask if compute_losses and self.mom_head is not None else None
            visual = self.image_encoder(batch, batch.image_present, mom_mask)
            x = visual.tokens
            for layer in self.image_layers:
                x = layer(x, visual.mask)
            streams["image"] = (x, visual.mask, visual.mask[:, 0])
        if cfg.use_knowledge:
            knowledge_input = batch.knowledge_features if cfg.frozen else batch.knowledge_input_ids
            if knowledge_input is None or batch.knowledge_attention_mask is None:
                raise ValueError("config.use_knowledge=True but the batch has no knowledge input / attention mask")
            present = batch.knowledge_present if batch.knowledge_present is not None else batch.knowledge_attention_mask.any(-1)
            mask = batch.knowledge_attention_mask & present.unsqueeze(-1)
            if cfg.frozen:  # one token per pair: its "property : value" vector
                tokens = self.knowledge_in(knowledge_input)
            else:
                tokens = encode_knowledge(self.text_encoder, knowledge_input, mask)
            streams["knowledge"] = (tokens, mask, present & mask.any(-1))

        interacted: dict[str, list[torch.Tensor]] = {name: [] for name in streams}
        for name, stack in self.co_attention.items():
            a, b = PAIRS[name]
            out_a, out_b = stack(streams[a][0], streams[a][1], streams[b][0], streams[b][1])
            interacted[a].append(out_a)
            interacted[b].append(out_b)
        fused = {name: self.fusion[name]([stream[0]] + interacted[name], stream[1]) for name, stream in streams.items()}

        present = {name: stream[2] for name, stream in streams.items()}
        pooled = {name: masked_mean(fused[name], streams[name][1]) for name in streams}
        if "image" in pooled:  # into the item space; an absent image stays zero (no bias)
            image = self.image_to_item(pooled["image"])
            pooled["image"] = image * present["image"].unsqueeze(-1).to(image.dtype)
        center = presence_mean([pooled[n] for n in streams], [present[n] for n in streams])

        item_repr, attention = center, None
        if self.structure is not None and batch.graph is not None:
            # the batch's star graph: value nodes and property edges carry span means of the
            # fused knowledge text, item nodes the centre c
            graph, knowledge = batch.graph, fused["knowledge"]
            if cfg.frozen:  # the property's own vector on the edge
                prop = self.property_vectors(batch.property_features)[rows_of(graph[HAS].edge_attr, batch.lpm_property_ids)]
            else:
                prop = span_mean(knowledge, graph[HAS].edge_index[0], graph[HAS].property_span)
            value = span_mean(knowledge, graph["value"].item, graph["value"].span)
            item_repr, (_, attention) = self.structure(
                (value, center), graph[REV_HAS].edge_index, prop, return_attention_weights=True
            )

        losses = self._losses(batch, streams, fused, visual, item_repr) if compute_losses else {}
        return K3MOutput(center, item_repr, losses, pooled, present, attention)

    def _losses(self, batch, streams, fused, visual, item_repr) -> dict[str, torch.Tensor]:
        if self.config.frozen:
            return self._frozen_losses(batch, streams, item_repr)
        cfg, losses = self.config, {}
        weights = cfg.loss
        if "title" in streams and batch.title_mlm_labels is not None and weights.mlm_title > 0:
            labels = batch.title_mlm_labels.masked_fill(~streams["title"][1], -100)
            losses["mlm_title"] = self.mlm_head.loss(fused["title"], labels, self.text_encoder.word_embeddings.weight)
        if "knowledge" in streams and batch.knowledge_mlm_labels is not None and weights.mlm_knowledge > 0:
            labels = batch.knowledge_mlm_labels.masked_fill(~streams["knowledge"][1], -100)
            losses["mlm_knowledge"] = self.mlm_head.loss(fused["knowledge"], labels, self.text_encoder.word_embeddings.weight)
        if visual is not None and self.mom_head is not None and batch.image_token_mask is not None and visual.target is not None:
            losses["mom"] = self.mom_head.loss(fused["image"][:, 1:], visual.target, visual.target_mask)
        lpm_ready = batch.pair_item is not None and batch.lpm_neg_value is not None and batch.lpm_value_input_ids is not None
        if "knowledge" in streams and lpm_ready and weights.lpm > 0:
            prop_vecs = self.encode_strings(batch.lpm_property_input_ids, batch.lpm_property_attention_mask)
            value_vecs = self.encode_strings(batch.lpm_value_input_ids, batch.lpm_value_attention_mask)
            losses["lpm"] = lpm_margin_loss(item_repr, prop_vecs, value_vecs, batch, cfg.lpm.margin, cfg.lpm.norm, cfg.lpm.corrupt_items)
        if losses:
            losses["loss"] = self.task_weighting(losses)
        return losses

    def _frozen_losses(self, batch, streams, item_repr) -> dict[str, torch.Tensor]:
        """The same four tasks at levels the cache cannot leak (docs/model.md): mlm_title and
        mom reconstruct the item's own title / image from c* (hidden, swapped or intact);
        mlm_knowledge predicts masked pairs' values; lpm is the paper's margin loss."""
        cfg, losses = self.config, {}
        if self.title_head is not None and batch.title_target is not None:
            losses["mlm_title"] = self.title_head.loss(item_repr, batch.title_target, batch.title_target_present)
        if self.image_head is not None and batch.image_target is not None:
            losses["mom"] = self.image_head.loss(item_repr, batch.image_target, batch.image_target_present)
        if "knowledge" in streams and batch.lpm_neg_value is not None and batch.value_features is not None:
            prop_vecs = self.property_vectors(batch.property_features)
            value_vecs = self.value_vectors(batch.value_features)
            if self.value_head is not None and batch.masked_pair_item is not None:
                masked = batch.masked_pair_item
                losses["mlm_knowledge"] = self.value_head.loss(
                    item_repr[masked], prop_vecs[rows_of(batch.masked_pair_property, batch.lpm_property_ids)], value_vecs,
                    rows_of(batch.masked_pair_value, batch.lpm_value_ids),
                )
            if cfg.loss.lpm > 0:
                losses["lpm"] = lpm_margin_loss(item_repr, prop_vecs, value_vecs, batch, cfg.lpm.margin, cfg.lpm.norm, cfg.lpm.corrupt_items)
        if losses:
            losses["loss"] = self.task_weighting(losses)
        return losses

    # -- inference API -----------------------------------------------------------------
    @torch.no_grad()
    def encode_items(self, batch: K3MBatch) -> torch.Tensor:
        """c* [B, H] in eval mode (no dropout, no Gumbel noise, no masking), no losses."""
        was_training = self.training
        self.eval()
        try:
            return self.forward(batch, compute_losses=False).item_repr
        finally:
            self.train(was_training)

    def property_vectors(self, features: torch.Tensor) -> torch.Tensor:
        """Frozen encoders: cached property-name features [N, F] -> LPM property vectors [N, H]."""
        return self.property_in(features.to(self.property_in.weight.dtype))

    def value_vectors(self, features: torch.Tensor) -> torch.Tensor:
        """Frozen encoders: cached value features [N, F] -> LPM value vectors [N, H]."""
        return self.value_in(features.to(self.value_in.weight.dtype))

    def encode_strings(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Standalone property/value strings [N, L] -> mean-pooled text vectors [N, H]."""
        if self.text_encoder is None:
            raise RuntimeError("this model has no text encoder (use_title and use_knowledge are both False)")
        return encode_strings(self.text_encoder, input_ids, attention_mask)

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
        the rest."""
        directory = Path(directory)
        weights = directory / WEIGHTS_NAME
        for needed in (directory / CONFIG_NAME, weights):
            if not needed.is_file():
                raise FileNotFoundError(f"{directory}: no {needed.name} (not a K3M checkpoint)")
        model = cls(K3MConfig.load(directory), load_pretrained_text=False)
        load_state_dict_strictly(model, load_file(str(weights)), weights, strict)
        return model.to(map_location)
