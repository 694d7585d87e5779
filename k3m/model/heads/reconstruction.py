"""Masked modality modelling (frozen encoders): from c*, reconstruct the item's own frozen
features of a modality (its title's mean token feature, its image's mean grid cell),
whatever the item was shown: the whole modality hidden, swapped for another item's, or
intact. The loss is 1 - cosine, averaged over the items that have the modality: in the raw
features' space, or with ``keep.reconstruct_in_block`` in the kept block's (unit length,
centred, projected), where the item vector uses the guess (docs/model.md).

This is MLM/MOM moved to a level the feature cache cannot leak (docs/model.md): with cached
*contextual* features, an unmasked token or cell still carries a masked neighbour, so
masking inside a title or image would be solved by copying. A hidden or swapped modality
must be inferred from the others: the model learns what a title or image should be given
the rest of the item, and to distrust a modality that disagrees with the rest.
"""
from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from k3m.model.heads.base import TaskHead


class ReconstructionHead(nn.Module):
    def __init__(self, hidden: int, target_dim: int):
        super().__init__()
        # linear: c* has to hold the modality's features linearly, so a linear probe (and
        # cosine search) on c* sees them as the frozen encoder laid them out
        self.net = nn.Linear(hidden, target_dim)

    def loss(self, item_repr: torch.Tensor, target: torch.Tensor, present: torch.Tensor, space=None) -> torch.Tensor:
        """item_repr c* [B, H]; target [B, F]; present bool [B] -> mean (1 - cos) over present;
        ``space``: a map both the guess and the target go through first (None: the raw features)."""
        guess = self.net(item_repr)
        if space is not None:
            guess, target = space(guess), space(target)
        cosine = F.cosine_similarity(guess.float(), target.float(), dim=-1)
        weights = present.to(cosine.dtype)
        return ((1 - cosine) * weights).sum() / weights.sum().clamp_min(1)


class ModalityReconstruction(ReconstructionHead, TaskHead):
    """Task head of frozen encoders: ``mlm_title`` reconstructs the item's own title feature,
    ``mom`` its own image feature (``modality``), from c*; ``in_block``: scored in the modality's
    kept block (``keep.reconstruct_in_block``) once the model's kept path is fitted."""

    def __init__(self, hidden: int, target_dim: int, task: str, modality: str, in_block: bool = False):
        super().__init__(hidden, target_dim)
        self.tasks, self.modality, self.in_block = (task,), modality, in_block

    def losses(self, ctx) -> dict[str, torch.Tensor]:
        targets = ctx.targets
        target = getattr(targets, self.modality, None) if targets is not None else None
        if target is None:
            return {}
        kept = ctx.kept
        # the block space exists once the kept path is fitted (before pretraining's first step)
        space = (partial(kept.block, self.modality)
                 if self.in_block and kept is not None and self.modality in kept.dims and bool(kept.fitted) else None)
        return {self.tasks[0]: self.loss(ctx.item_repr, target, getattr(targets, f"{self.modality}_present"), space)}
