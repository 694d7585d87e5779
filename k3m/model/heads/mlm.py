"""Masked language modelling head (titles and knowledge values share it): BERT's
transform + a decoder tied to the text encoder's word embeddings.

The batch arrives already masked (15%; 80% [MASK] / 10% random / 10% kept, see
MaskingConfig); labels are -100 except at masked positions.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from k3m.model.heads.base import TaskHead

IGNORE = -100


def select_targets(hidden: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of ``hidden`` [B, L, H] worth decoding, and their labels.

    On CPU only the masked positions are kept (decoding every token into the vocabulary
    would dominate the step); on CUDA every position is kept, because boolean indexing
    would force a host sync and the GPU decodes the extra rows for free.
    """
    hidden, labels = hidden.reshape(-1, hidden.shape[-1]), labels.reshape(-1)
    if hidden.device.type == "cpu":
        keep = (labels != IGNORE).nonzero().squeeze(-1)
        return hidden[keep], labels[keep]
    return hidden, labels


def token_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over real targets; 0 (with a gradient path) when there are none."""
    total = F.cross_entropy(logits.float(), labels, ignore_index=IGNORE, reduction="sum")
    return total / (labels != IGNORE).sum().clamp_min(1)


class MLMHead(nn.Module):
    def __init__(self, hidden: int, vocab_size: int):
        super().__init__()
        self.transform = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.LayerNorm(hidden, eps=1e-12))
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(self, hidden: torch.Tensor, word_embeddings: torch.Tensor) -> torch.Tensor:
        return F.linear(self.transform(hidden), word_embeddings, self.bias)

    def loss(self, hidden: torch.Tensor, labels: torch.Tensor, word_embeddings: torch.Tensor) -> torch.Tensor:
        hidden, labels = select_targets(hidden, labels)
        return token_loss(self(hidden, word_embeddings), labels)


class MaskedTokens(MLMHead, TaskHead):
    """Task head of trainable encoders: ``mlm_title`` and ``mlm_knowledge`` (the knowledge
    text's value tokens), one decoder tied to the text encoder's word embeddings."""

    def __init__(self, hidden: int, vocab_size: int, tasks: tuple[str, ...]):
        super().__init__(hidden, vocab_size)
        self.tasks = tasks

    def losses(self, ctx) -> dict[str, torch.Tensor]:
        out = {}
        if ctx.targets is None:
            return out
        embeddings = ctx.stem.text_encoder.word_embeddings.weight
        for task, stream, labels in (("mlm_title", "title", ctx.targets.title_labels),
                                     ("mlm_knowledge", "knowledge", ctx.targets.knowledge_labels)):
            if task in self.tasks:
                out[task] = self.loss(ctx.fused[stream], labels.masked_fill(~ctx.streams[stream].mask, IGNORE), embeddings)
        return out
