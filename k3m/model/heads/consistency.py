"""The consistency task (frozen encoders; loss weight ``loss.consistency``): is the title the
item shows its own, and is its image? FashionBERT's image-text matching as a classifier, asked
of each shown modality against the others and c*.

Pretraining knows what it did to an item (hid, swapped or kept its title and image;
``FeatureTargets.title_own`` / ``image_own``); the knowledge is never swapped, so the
classifier learns to judge a title or photo by whether it agrees with the item's pairs and
with the other modality. With ``keep.distrust`` the item vector reads the judgement: a kept
block is filled from c* (as an absent one is) as far as its modality is judged another
item's (k3m.model.modeling). Without it, another product's title and photo, which agree with
each other, would fill two of the item vector's four blocks in full.
"""
from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

from k3m.model.heads.base import TaskHead

JUDGED = ("title", "image")  # what pretraining hides or swaps; the knowledge is the item's own


class ModalityConsistency(TaskHead):
    tasks = ("consistency",)

    def __init__(self, widths: dict[str, int], hidden: int, dim: int):
        """``widths``: name -> width of the modality's pooled frozen feature (the modalities
        the model reads); ``hidden``: c*'s width; ``dim``: the width each view is projected to."""
        super().__init__()
        self.judged = tuple(name for name in JUDGED if name in widths)
        # LayerNorm: unit-length features projected are tiny, and so would be their products
        # and the gradients that learn agreement
        self.views = nn.ModuleDict({name: nn.Sequential(nn.Linear(width, dim), nn.LayerNorm(dim))
                                    for name, width in widths.items()})
        self.item = nn.Sequential(nn.Linear(hidden, dim), nn.LayerNorm(dim))
        n = len(widths) + 1
        # each view and c*, and every pair's elementwise product: agreement is a product of views
        self.classifier = nn.Sequential(nn.Linear((n + n * (n - 1) // 2) * dim, dim), nn.GELU(),
                                        nn.Linear(dim, len(self.judged)))
        # the title and the pairs are MiniLM sentence vectors in one space: their cosine tells
        # another item's title from the item's own before anything is learned (AUC 0.82 on
        # fashion44k's slice), a shortcut the learned agreement starts from
        self.text_agreement = nn.Linear(1, len(self.judged)) if "title" in widths and "knowledge" in widths else None

    def logits(self, pooled: dict[str, tuple[torch.Tensor, torch.Tensor]], item_repr: torch.Tensor) -> dict[str, torch.Tensor]:
        """``pooled``: name -> (the shown modality's pooled frozen features [B, F], present [B])
        (``FeatureStem.pooled_features``); ``item_repr``: c* [B, H] -> name -> logit [B] that
        the shown title / image is the item's own (meaningless where it is absent)."""
        views = [self.item(item_repr.float())]
        for name, layer in self.views.items():
            features, present = pooled[name]
            views.append(layer(F.normalize(features.float(), dim=-1)) * present.unsqueeze(-1))
        products = [a * b for a, b in itertools.combinations(views, 2)]
        out = self.classifier(torch.cat(views + products, dim=-1))
        if self.text_agreement is not None:
            (title, has_title), (knowledge, has_knowledge) = pooled["title"], pooled["knowledge"]
            cosine = F.cosine_similarity(title.float(), knowledge.float(), dim=-1) * (has_title & has_knowledge)
            out = out + self.text_agreement(cosine.unsqueeze(-1))
        return {name: out[:, i] for i, name in enumerate(self.judged)}

    def own_probability(self, pooled, item_repr: torch.Tensor) -> dict[str, torch.Tensor]:
        """name -> [B] the probability that the shown title / image is the item's own."""
        return {name: torch.sigmoid(logit) for name, logit in self.logits(pooled, item_repr).items()}

    def losses(self, ctx) -> dict[str, torch.Tensor]:
        targets = ctx.targets
        if targets is None:
            return {}
        pooled = ctx.shown if ctx.shown is not None else ctx.stem.pooled_features(ctx.batch)
        logits = ctx.own_logits if ctx.own_logits is not None else self.logits(pooled, ctx.item_repr)
        total, count = ctx.item_repr.new_zeros((), dtype=torch.float32), 0
        for name, logit in logits.items():
            own = getattr(targets, f"{name}_own", None)
            if own is None:
                continue
            shown = pooled[name][1]
            weights = shown.float()
            loss = F.binary_cross_entropy_with_logits(logit.float(), own.float(), reduction="none")
            total = total + (loss * weights).sum() / weights.sum().clamp_min(1)
            count += 1
        return {"consistency": total / count} if count else {}
