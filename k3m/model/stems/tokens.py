"""TokenStem: the stem of trainable encoders (``encoders: trainable``), the encoders part of
the model. Title and knowledge text run through one BERT (``encoders.text.TextEncoder``,
from scratch or MiniLM's weights, fine-tuned; segment 0 for titles, 1 for knowledge text and
property/value strings); images through the patch, CNN, EfficientNet or region encoder and
the image-only layers. Reads :class:`~k3m.model.inputs.TokenInputs`.
"""
from __future__ import annotations

import torch

from encoders.knowledge import encode_knowledge, encode_strings, span_mean
from encoders.text import TextEncoder, load_pretrained_bert
from k3m.model.batch_graph import MENTIONS
from k3m.model.stems.base import Stem, StemOutput, Stream

TITLE_TOKEN_TYPE = 0


class TokenStem(Stem):
    def __init__(self, config, load_pretrained_text: bool = True):
        """``load_pretrained_text``: copy ``config.text.pretrained_text_dir`` into the text
        encoder (K3MModel.from_pretrained passes False: its own weights already contain it)."""
        super().__init__()
        self.use_title, self.use_image, self.use_knowledge = config.use_title, config.use_image, config.use_knowledge
        self.masks_visual_tokens = config.use_image and config.loss.mom > 0  # MOM trains
        self.text_encoder = None
        if config.use_title or config.use_knowledge:
            self.text_encoder = TextEncoder(config.text)
            if config.text.pretrained_text_dir and load_pretrained_text:
                load_pretrained_bert(self.text_encoder, config.text.pretrained_text_dir)
        if config.use_image:
            self.build_image_stream(config, frozen=False)

    def forward(self, batch, compute_losses: bool = True) -> StemOutput:
        """Visual tokens are MOM-masked only when losses are computed (and MOM trains)."""
        inputs, out = batch.inputs, StemOutput()
        if self.use_title:
            present = batch.title_present
            mask = inputs.title.attention_mask & present.unsqueeze(-1)
            tokens = self.text_encoder(inputs.title.input_ids, mask, token_type=TITLE_TOKEN_TYPE)
            out.streams["title"] = Stream(tokens, mask, present & mask.any(-1))
        if self.use_image:
            masked = compute_losses and self.masks_visual_tokens and batch.targets is not None
            out.streams["image"], out.visual = self.image_stream(
                inputs.image, batch.image_present, batch.targets.visual_mask if masked else None)
        if self.use_knowledge:
            if inputs.knowledge is None:
                raise ValueError("config.use_knowledge=True but the batch has no knowledge text")
            present = batch.knowledge_present
            mask = inputs.knowledge.attention_mask & present.unsqueeze(-1)
            tokens = encode_knowledge(self.text_encoder, inputs.knowledge.input_ids, mask)
            out.streams["knowledge"] = Stream(tokens, mask, present & mask.any(-1))
        return out

    def edge_properties(self, batch, knowledge: torch.Tensor) -> torch.Tensor:
        """The mean over each property's tokens in the fused knowledge stream."""
        edges = batch.graph[MENTIONS]
        return span_mean(knowledge, edges.edge_index[0], edges.property_span)

    def vocabulary(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """The property and value strings encoded on their own, mean-pooled."""
        inputs = batch.inputs
        return (self.encode_strings(inputs.properties.input_ids, inputs.properties.attention_mask),
                self.encode_strings(inputs.values.input_ids, inputs.values.attention_mask))

    def encode_strings(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Standalone property/value strings [N, L] -> mean-pooled text vectors [N, H]."""
        if self.text_encoder is None:
            raise RuntimeError("this model has no text encoder (use_title and use_knowledge are both False)")
        return encode_strings(self.text_encoder, input_ids, attention_mask)
