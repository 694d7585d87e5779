"""Link prediction with the paper's margin loss (LPM).

Score ``S(c*, p, v) = ||c* + p - v||`` (lower = more plausible). For every positive pair
(item, p, v) of the batch, negatives corrupt the value (values of the same property,
filtered against the item's true triples, chosen by the data pipeline) and the item (other
batch items for which the triple is false):

    L = mean over valid negatives of max(0, gamma + S(pos) - S(neg))

Property and value vectors come from the stem: with trainable encoders the text encoder's
mean-pooled encodings of the strings on their own, so that any value string can be scored
later; with frozen ones the cached name features, projected.
"""
from __future__ import annotations

import torch

from k3m.model.heads.base import TaskHead


def lpm_distance(item_repr: torch.Tensor, property_vec: torch.Tensor, value_vec: torch.Tensor, norm: int = 2) -> torch.Tensor:
    """``||c* + p - v||_norm`` over the last dim, with ordinary broadcasting of the rest."""
    return torch.linalg.vector_norm(item_repr + property_vec - value_vec, ord=norm, dim=-1)


def rows_of(ids: torch.Tensor, table_ids: torch.Tensor) -> torch.Tensor:
    """Row in ``table_ids`` of each global id in ``ids`` (ids < 0 map to row 0; mask them)."""
    sorted_ids, order = table_ids.sort()
    pos = torch.searchsorted(sorted_ids, ids.clamp_min(0)).clamp_max(max(table_ids.numel() - 1, 0))
    return order[pos]


def lpm_margin_loss(
    item_repr: torch.Tensor,
    property_vecs: torch.Tensor,
    value_vecs: torch.Tensor,
    lpm,
    margin: float,
    norm: int = 2,
    corrupt_items: bool = True,
) -> torch.Tensor:
    """item_repr c* [B, H]; property_vecs [Up, H] for ``lpm.property_ids``; value_vecs [U, H]
    for ``lpm.value_ids``; ``lpm``: the batch's LPMTargets (positives and negatives)."""
    positives = lpm.positives
    prop = property_vecs[rows_of(positives.property, lpm.property_ids)]  # [Q, H]
    value = value_vecs[rows_of(positives.value, lpm.value_ids)]  # [Q, H]
    item = item_repr[positives.item]  # [Q, H]
    positive = lpm_distance(item, prop, value, norm)  # [Q]

    neg_value = lpm.neg_value  # [Q, K] global ids
    neg_value_vecs = value_vecs[rows_of(neg_value, lpm.value_ids)]  # [Q, K, H]
    scores = [lpm_distance(item.unsqueeze(1), prop.unsqueeze(1), neg_value_vecs, norm)]
    valid = [neg_value >= 0]
    if corrupt_items and lpm.neg_item is not None:
        neg_item = lpm.neg_item  # [Q, K] batch positions, -1 = none
        scores.append(lpm_distance(item_repr[neg_item.clamp_min(0)], prop.unsqueeze(1), value.unsqueeze(1), norm))
        valid.append(neg_item >= 0)
    negative, valid = torch.cat(scores, dim=1), torch.cat(valid, dim=1).to(positive.dtype)
    hinge = torch.relu(margin + positive.unsqueeze(1) - negative) * valid
    return hinge.sum() / valid.sum().clamp_min(1)


class LinkPrediction(TaskHead):
    """Task head ``lpm`` of both encoder modes: the margin loss on c*, with the property and
    value vectors the stem makes (strings encoded on their own, or cached features projected)."""

    tasks = ("lpm",)

    def __init__(self, lpm_config):
        super().__init__()
        self.margin, self.norm, self.corrupt_items = lpm_config.margin, lpm_config.norm, lpm_config.corrupt_items

    def losses(self, ctx) -> dict[str, torch.Tensor]:
        if ctx.batch.lpm is None or "knowledge" not in ctx.streams:
            return {}
        props, values = ctx.vocabulary()
        return {"lpm": lpm_margin_loss(ctx.item_repr, props, values, ctx.batch.lpm, self.margin, self.norm, self.corrupt_items)}
