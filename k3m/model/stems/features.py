"""FeatureStem: the stem of frozen encoders (``encoders: frozen``). The pretrained encoders
ran once into the feature cache; the stem projects their outputs into the streams: the
title's MiniLM token features and one "property : value" vector per pair (Linear + LayerNorm,
``nn.FeatureProjection``), the EfficientNet grid (``encoders.image.CachedGridEncoder``, then
the image-only layers), and the property and value names' vectors for the graph's edges and
the LPM (``property_in``, ``value_in``). Reads :class:`~k3m.model.inputs.FeatureInputs`.

``pooled_features`` gives each modality's cached features pooled over its real tokens, as the
frozen encoders laid them out (before any projection).
"""
from __future__ import annotations

import torch
from torch import nn

from encoders.pooling import masked_mean
from k3m.model.batch_graph import MENTIONS
from k3m.model.heads.lpm import rows_of
from k3m.model.nn import FeatureProjection
from k3m.model.stems.base import Stem, StemOutput, Stream


class FeatureStem(Stem):
    def __init__(self, config):
        super().__init__()
        self.use_title, self.use_image, self.use_knowledge = config.use_title, config.use_image, config.use_knowledge
        features, hidden, dropout = config.text.feature_size, config.hidden_size, config.text.dropout
        self.title_in = FeatureProjection(features, hidden, dropout) if config.use_title else None
        if config.use_knowledge:
            self.knowledge_in = FeatureProjection(features, hidden, dropout)
            self.property_in = nn.Linear(features, hidden)  # property vectors: graph edges, LPM
            self.value_in = nn.Linear(features, hidden)  # value vectors: LPM, masked pair targets
        if config.use_image:
            self.build_image_stream(config, frozen=True)

    def forward(self, batch, compute_losses: bool = True) -> StemOutput:
        """Nothing is masked inside a stream: frozen encoders mask whole modalities and pairs
        in the data pipeline (k3m.data.adapters.features)."""
        inputs, out = batch.inputs, StemOutput()
        if self.use_title:
            present = batch.title_present
            mask = inputs.title_mask & present.unsqueeze(-1)
            out.streams["title"] = Stream(self.title_in(inputs.title), mask, present & mask.any(-1))
        if self.use_image:
            out.streams["image"], out.visual = self.image_stream(inputs.image, batch.image_present, None)
        if self.use_knowledge:
            present = batch.knowledge_present
            mask = inputs.knowledge_mask & present.unsqueeze(-1)
            out.streams["knowledge"] = Stream(self.knowledge_in(inputs.knowledge), mask, present & mask.any(-1))
        return out

    def edge_properties(self, batch, knowledge: torch.Tensor) -> torch.Tensor:
        """The property name's own cached vector, projected."""
        inputs = batch.inputs
        return self.property_vectors(inputs.property_features)[rows_of(batch.graph[MENTIONS].edge_attr, inputs.property_ids)]

    def vocabulary(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        inputs = batch.inputs
        return self.property_vectors(inputs.property_features), self.value_vectors(inputs.value_features)

    def property_vectors(self, features: torch.Tensor) -> torch.Tensor:
        """Cached property-name features [N, F] -> LPM property vectors [N, H]."""
        return self.property_in(features.to(self.property_in.weight.dtype))

    def value_vectors(self, features: torch.Tensor) -> torch.Tensor:
        """Cached value features [N, F] -> LPM value vectors [N, H]."""
        return self.value_in(features.to(self.value_in.weight.dtype))

    @staticmethod
    def pooled_features(batch) -> dict[str, torch.Tensor]:
        """Each modality's raw cached features, pooled over its real tokens, with its presence:
        name -> (float [B, F], bool [B]); zeros where the item lacks the modality. Title: the
        mean of its token features; image: the mean of its grid cells; knowledge: the mean of
        its pairs' "property : value" vectors."""
        inputs, out = batch.inputs, {}
        title_mask = inputs.title_mask & batch.title_present.unsqueeze(-1)
        out["title"] = (masked_mean(inputs.title, title_mask), title_mask.any(-1))
        if inputs.image is not None:
            cells = batch.image_present.unsqueeze(-1).expand(inputs.image.shape[:2])
            out["image"] = (masked_mean(inputs.image, cells), batch.image_present)
        knowledge_mask = inputs.knowledge_mask & batch.knowledge_present.unsqueeze(-1)
        out["knowledge"] = (masked_mean(inputs.knowledge, knowledge_mask), knowledge_mask.any(-1))
        return out
