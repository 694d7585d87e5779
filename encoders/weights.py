"""Reading weight files and loading them strictly: every tensor of the file used, every
tensor of the module filled, every shape equal — or an error naming what differs (the
original K3M code silently loaded nothing because of a key-prefix mismatch)."""
from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from etl.errors import UserError

log = logging.getLogger(__name__)


class CheckpointMismatchError(UserError, RuntimeError):
    """A checkpoint's keys or shapes do not match the model it is loaded into."""

    def __init__(self, source, missing=(), unexpected=(), mismatched=()):
        self.missing, self.unexpected, self.mismatched = list(missing), list(unexpected), list(mismatched)
        parts = [f"checkpoint {source} does not match the model"]
        for name, keys in (("missing keys", self.missing), ("unexpected keys", self.unexpected), ("shape mismatches", self.mismatched)):
            if keys:
                shown = ", ".join(map(str, keys[:12])) + (f", ... ({len(keys)} in all)" if len(keys) > 12 else "")
                parts.append(f"{name}: {shown}")
        super().__init__("; ".join(parts))


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A ``.safetensors`` file or a torch pickle of tensors (``weights_only``)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    return torch.load(path, map_location="cpu", weights_only=True)


def load_state_dict_strictly(module: nn.Module, state: dict[str, torch.Tensor], source, strict: bool = True) -> list[str]:
    """Load ``state`` into ``module``. Any missing, unexpected or wrongly shaped key raises
    CheckpointMismatchError (``strict=False``: loads the matching keys and logs the rest).
    Returns the loaded keys."""
    target = module.state_dict()
    missing = sorted(set(target) - set(state))
    unexpected = sorted(set(state) - set(target))
    mismatched = sorted(k for k in set(state) & set(target) if state[k].shape != target[k].shape)
    if missing or unexpected or mismatched:
        shapes = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(target[k].shape)}" for k in mismatched]
        error = CheckpointMismatchError(source, missing, unexpected, shapes)
        if strict:
            raise error
        log.warning("%s", error)
        state = {k: v for k, v in state.items() if k in target and k not in set(mismatched)}
    module.load_state_dict(state, strict=False)
    return sorted(state)
