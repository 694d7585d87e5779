"""The interface of a task head: a module that turns a forward pass (HeadContext) into the
losses of the pretraining tasks it serves."""
from __future__ import annotations

import torch
from torch import nn

from k3m.model.heads.context import HeadContext


class TaskHead(nn.Module):
    tasks: tuple[str, ...] = ()  # the loss names it can return (LossConfig fields)

    def losses(self, ctx: HeadContext) -> dict[str, torch.Tensor]:
        """Loss per task whose targets the batch carries (a task without targets is absent,
        never a zero pretending to be a loss)."""
        raise NotImplementedError
