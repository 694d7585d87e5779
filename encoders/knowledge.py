"""Knowledge encoder: the item's pairs as text (``p1 : v1 ; p2 : v2 ; ...``) through the
shared text encoder, and property/value vectors as masked means over their token spans.

The spans come from the tokenizer's offset mapping (the data pipeline computes them into
``K3MBatch.pair_property_span`` / ``pair_value_span``); nothing here depends on separator
token ids. Caps: ``TextConfig.max_pairs`` (10) and ``max_knowledge_tokens`` (48).
"""
from __future__ import annotations

import torch

from encoders.pooling import masked_mean
from encoders.text import TextEncoder

KNOWLEDGE_TOKEN_TYPE = 1  # BERT segment id for knowledge text and property/value strings


def span_mean(hidden: torch.Tensor, row: torch.Tensor, span: torch.Tensor) -> torch.Tensor:
    """Mean of ``hidden[row[j], start_j:end_j]`` for every span ``j`` at once.

    hidden [B, L, H], row long [P], span long [P, 2] as [start, end) -> [P, H].
    An empty span (end <= start) gives a zero vector; the pipeline drops pairs whose span
    was truncated away, so that does not occur in real batches.
    """
    positions = torch.arange(hidden.shape[1], device=hidden.device)
    inside = (positions >= span[:, :1]) & (positions < span[:, 1:])  # [P, L]
    weights = inside.to(hidden.dtype) / inside.sum(-1, keepdim=True).clamp_min(1).to(hidden.dtype)
    return torch.bmm(weights.unsqueeze(1), hidden[row]).squeeze(1)


def encode_knowledge(text_encoder: TextEncoder, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Knowledge text [B, Lk] -> token features [B, Lk, H] with the shared (title) encoder."""
    return text_encoder(input_ids, attention_mask, token_type=KNOWLEDGE_TOKEN_TYPE)


def encode_strings(text_encoder: TextEncoder, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Standalone property/value strings [N, L] -> mean over real tokens [N, H]."""
    if input_ids.shape[0] == 0:  # a batch without pairs has no strings to encode
        weight = text_encoder.word_embeddings.weight
        return weight.new_zeros(0, weight.shape[1])
    hidden = text_encoder(input_ids, attention_mask, token_type=KNOWLEDGE_TOKEN_TYPE)
    return masked_mean(hidden, attention_mask)
