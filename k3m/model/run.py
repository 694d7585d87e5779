"""A trained run resolved once: which checkpoint, which weights, which model id.

``embed``, ``evaluate``, ``sync`` and a resumed pretraining each need the same facts about
a checkpoint: its directory (a run directory's latest complete checkpoint), the sha256 of
its weights, the model id derived from them, its model config, the property order and the
tokenizer it learned with. :meth:`ResolvedRun.resolve` finds the checkpoint once (one
``find_checkpoint``: the warning about a damaged latest checkpoint is said once, and a run
that writes a newer checkpoint meanwhile cannot mix two checkpoints into one answer); the
rest is read from that directory, each part on first use, and passed along as one object.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Optional

from k3m.model.checkpoint import PROPERTY_ORDER, Checkpoint, CheckpointError, find_checkpoint, incomplete, load_model
from k3m.model.configuration import K3MConfig
from k3m.model.modeling import WEIGHTS_NAME, K3MModel


@dataclass(frozen=True)
class ResolvedRun:
    path: Path  # the checkpoint directory (never a run directory: resolved)

    @classmethod
    def resolve(cls, checkpoint: "str | Path | ResolvedRun") -> "ResolvedRun":
        """A checkpoint directory, or a run (or checkpoints) directory's latest complete
        checkpoint; an incomplete one named directly is a CheckpointError naming the file."""
        if isinstance(checkpoint, ResolvedRun):
            return checkpoint
        path = find_checkpoint(checkpoint)
        damage = incomplete(path)
        if damage is not None:
            raise CheckpointError(f"{damage}: not a complete checkpoint; train again or name another checkpoint")
        return cls(path)

    @cached_property
    def weights_sha256(self) -> str:
        digest = hashlib.sha256()
        with open(self.path / WEIGHTS_NAME, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()

    @property
    def run_name(self) -> str:
        ckpt = self.path
        return ckpt.parent.parent.name if ckpt.parent.name == "checkpoints" else ckpt.parent.name

    @cached_property
    def model_id(self) -> str:
        """``<run>-<step>-<sha256 of the weights, 10 hex>``: readable and exact (two runs that
        share a name never share an id)."""
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{self.run_name}-{self.path.name}").strip("._-") or "k3m"
        return f"{name[:100]}-{self.weights_sha256[:10]}"

    @cached_property
    def config(self) -> K3MConfig:
        return K3MConfig.load(self.path)

    @cached_property
    def property_order(self) -> Optional[list[str]]:
        """The order of an item's pairs the model learned with; None for checkpoints written
        before it was saved (they follow the embedded build's own order)."""
        file = self.path / PROPERTY_ORDER
        return json.loads(file.read_text()) if file.is_file() else None

    @cached_property
    def tokenizer(self):
        from encoders.text import load_tokenizer

        return load_tokenizer(self.path)

    def load_model(self, map_location: str = "cpu") -> K3MModel:
        return load_model(self.path, map_location)

    def load(self, map_location: str = "cpu") -> Checkpoint:
        return Checkpoint(self.path, self.load_model(map_location), self.tokenizer, self.property_order)
