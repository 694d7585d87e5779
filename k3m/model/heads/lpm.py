"""Link prediction with the paper's margin loss (LPM).

Score ``S(c*, p, v) = ||c* + p - v||`` (lower = more plausible). For every positive pair
(item, p, v) of the batch, negatives corrupt the value (values of the same property,
filtered against the item's true triples, chosen by the data pipeline) and the item (other
batch items for which the triple is false):

    L = mean over valid negatives of max(0, gamma + S(pos) - S(neg))

Property and value vectors are the text encoder's mean-pooled encodings of the strings on
their own (K3MBatch.lpm_*_input_ids), so that any value string can be scored later.
"""
from __future__ import annotations

import torch


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
    batch,
    margin: float,
    norm: int = 2,
    corrupt_items: bool = True,
) -> torch.Tensor:
    """item_repr c* [B, H]; property_vecs [Up, H] for batch.lpm_property_ids; value_vecs
    [U, H] for batch.lpm_value_ids; positives ``batch.lpm_positives()``."""
    item_pos, prop_ids, value_ids = batch.lpm_positives()
    prop = property_vecs[rows_of(prop_ids, batch.lpm_property_ids)]  # [Q, H]
    value = value_vecs[rows_of(value_ids, batch.lpm_value_ids)]  # [Q, H]
    item = item_repr[item_pos]  # [Q, H]
    positive = lpm_distance(item, prop, value, norm)  # [P]

    neg_value = batch.lpm_neg_value  # [P, K] global ids
    neg_value_vecs = value_vecs[rows_of(neg_value, batch.lpm_value_ids)]  # [P, K, H]
    scores = [lpm_distance(item.unsqueeze(1), prop.unsqueeze(1), neg_value_vecs, norm)]
    valid = [neg_value >= 0]
    if corrupt_items and batch.lpm_neg_item is not None:
        neg_item = batch.lpm_neg_item  # [P, K] batch positions, -1 = none
        scores.append(lpm_distance(item_repr[neg_item.clamp_min(0)], prop.unsqueeze(1), value.unsqueeze(1), norm))
        valid.append(neg_item >= 0)
    negative, valid = torch.cat(scores, dim=1), torch.cat(valid, dim=1).to(positive.dtype)
    hinge = torch.relu(margin + positive.unsqueeze(1) - negative) * valid
    return hinge.sum() / valid.sum().clamp_min(1)
