"""The stem's interface: a batch's typed inputs -> the initial streams E (title, image,
knowledge) that the shared core reads, one stem per encoder mode.

A stem also answers the two questions that depend on how the encoders run: the property
vector on each edge of the batch star graph (``edge_properties``) and the property and value
vectors the LPM and masked-pair losses compare against (``vocabulary``). The image stream is
built the same way in both modes (an image encoder, then the image-only layers) and lives
here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import nn

from encoders.image import VisualTokens, build_image_encoder
from k3m.model.nn import TransformerLayer

MODALITIES = ("title", "image", "knowledge")  # the order streams are made and fused in


@dataclass
class Stream:
    tokens: torch.Tensor  # E [B, L, W], the initial (pre-interaction) features
    mask: torch.Tensor  # bool [B, L], real tokens of present items
    present: torch.Tensor  # bool [B], the item has this modality (and a real token of it)


@dataclass
class StemOutput:
    streams: dict[str, Stream] = field(default_factory=dict)  # the modalities the model uses, MODALITIES order
    visual: Optional[VisualTokens] = None  # the image encoder's output (MOM targets, trainable encoders)


class Stem(nn.Module):
    def forward(self, batch, compute_losses: bool = True) -> StemOutput:
        raise NotImplementedError

    def edge_properties(self, batch, knowledge: torch.Tensor) -> torch.Tensor:
        """Property vectors [P, H] on the batch graph's edges, given the fused knowledge stream."""
        raise NotImplementedError

    def vocabulary(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(property vectors [Up, H], value vectors [U, H]): rows of ``batch.lpm.property_ids``
        and ``batch.lpm.value_ids``."""
        raise NotImplementedError

    # -- the image stream, the same in both modes ----------------------------------------------
    def build_image_stream(self, config, frozen: bool) -> None:
        img = config.image
        self.image_encoder = build_image_encoder(img, frozen=frozen)
        self.image_layers = nn.ModuleList(
            TransformerLayer(img.hidden_size, img.num_heads, img.intermediate_size, img.dropout) for _ in range(img.num_layers)
        )

    def image_stream(self, images, present: torch.Tensor, mom_mask: Optional[torch.Tensor]) -> tuple[Stream, VisualTokens]:
        visual = self.image_encoder(images, present, mom_mask)
        x = visual.tokens
        for layer in self.image_layers:
            x = layer(x, visual.mask)
        return Stream(x, visual.mask, visual.mask[:, 0]), visual
