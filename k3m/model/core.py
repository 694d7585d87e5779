"""K3MCore: the part of K3M both encoder modes share, the paper's modal-interaction layer and
structure aggregation.

streams E (from the stem) -> co-attention stacks per modality pair -> IIFM fusion per
modality -> masked mean over real tokens -> pooled title / image / knowledge -> item centre c
(the mean over the modalities an item has) -> the GAT over the batch star graph -> c*.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import nn

from encoders.knowledge import span_mean
from encoders.pooling import masked_mean
from k3m.model.batch_graph import MENTIONED_BY, VALUE_MENTION
from k3m.model.nn import IIFM, CoAttentionStack, StructureAggregation, presence_mean
from k3m.model.stems import Stream

# co-attention pairs: name -> (stream a, stream b)
PAIRS = {
    "title_image": ("title", "image"),
    "knowledge_image": ("knowledge", "image"),
    "title_knowledge": ("title", "knowledge"),
}


@dataclass
class CoreOutput:
    fused: dict[str, torch.Tensor]  # per modality, the IIFM output [B, L, W]
    pooled: dict[str, torch.Tensor]  # per modality, [B, H] in the item space, zeros where absent
    present: dict[str, torch.Tensor]  # per modality, bool [B]
    item_center: torch.Tensor  # c [B, H]
    item_repr: torch.Tensor  # c* [B, H]
    pair_attention: Optional[torch.Tensor] = None  # [P, heads] structure-aggregation weights


class K3MCore(nn.Module):
    def __init__(self, config):
        super().__init__()
        hidden, image_hidden = config.hidden_size, config.image.hidden_size
        if config.use_image:  # the pooled image into the item space
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

    def forward(self, streams: dict[str, Stream], graph, edge_properties: Callable[[torch.Tensor], torch.Tensor]) -> CoreOutput:
        """``graph``: the batch star graph; ``edge_properties(fused knowledge) -> [P, H]``: the
        property vector of each of its edges (the stem's)."""
        interacted: dict[str, list[torch.Tensor]] = {name: [] for name in streams}
        for name, stack in self.co_attention.items():
            a, b = PAIRS[name]
            out_a, out_b = stack(streams[a].tokens, streams[a].mask, streams[b].tokens, streams[b].mask)
            interacted[a].append(out_a)
            interacted[b].append(out_b)
        fused = {name: self.fusion[name]([s.tokens] + interacted[name], s.mask) for name, s in streams.items()}

        present = {name: s.present for name, s in streams.items()}
        pooled = {name: masked_mean(fused[name], s.mask) for name, s in streams.items()}
        if "image" in pooled:  # into the item space; an absent image stays zero (no bias)
            image = self.image_to_item(pooled["image"])
            pooled["image"] = image * present["image"].unsqueeze(-1).to(image.dtype)
        center = presence_mean([pooled[n] for n in streams], [present[n] for n in streams])

        item_repr, attention = center, None
        if self.structure is not None and graph is not None:
            # item nodes carry c; value-mention nodes the span means of the fused knowledge
            # stream; edges the stem's property vectors
            knowledge = fused["knowledge"]
            prop = edge_properties(knowledge)
            value = span_mean(knowledge, graph[VALUE_MENTION].item, graph[VALUE_MENTION].span)
            item_repr, (_, attention) = self.structure(
                (value, center), graph[MENTIONED_BY].edge_index, prop, return_attention_weights=True
            )
        return CoreOutput(fused, pooled, present, center, item_repr, attention)
