"""Checkpoints of a pretraining run: where they are, what one holds, how to load one.

Layout (written by :func:`save_checkpoint`, read by everything that uses a trained model)::

    RUN_DIR/checkpoints/step_N/        k3m_config.json + model.safetensors (K3MModel.save_pretrained),
                                       the tokenizer's files, property_order.json, and whatever
                                       the writer adds (training: trainer_state.pt, train_config.yaml)
    RUN_DIR/checkpoints/latest         name of the newest complete checkpoint

A checkpoint directory is written into a hidden sibling and renamed into place, and
``latest`` moves only after that, so a crash never leaves a half checkpoint that looks done.
A checkpoint damaged afterwards (a weights file cut short by a full disk or a copy) is told
from its safetensors header without reading the tensors: choosing a run's latest checkpoint
skips it, with a warning, for the newest complete one; one named directly, or the only one,
is a :class:`CheckpointError` naming the file (exit 2).
"""
from __future__ import annotations

import json
import shutil
import struct
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from encoders.text import load_tokenizer
from etl.atomic import write_text, writing_directory
from etl.errors import UserError
from k3m.model.configuration import CONFIG_NAME
from k3m.model.modeling import WEIGHTS_NAME, K3MModel

CHECKPOINTS = "checkpoints"
LATEST = "latest"
# the order of an item's pairs the model learned with; embedding another build follows it
PROPERTY_ORDER = "property_order.json"


class CheckpointError(UserError):
    """A checkpoint whose files are incomplete or corrupt."""


def find_checkpoint(path: str | Path) -> Path:
    """A checkpoint dir, or a run dir / checkpoints dir -> its ``latest`` checkpoint, or, when
    that one is incomplete, the newest complete one (with a warning on stderr)."""
    path = Path(path)
    for candidate in (path, path / CHECKPOINTS):
        if (candidate / LATEST).is_file():
            return _newest_complete(candidate, candidate / (candidate / LATEST).read_text().strip())
    if (path / CONFIG_NAME).is_file() and (path / WEIGHTS_NAME).is_file():
        return path
    raise FileNotFoundError(f"{path}: no checkpoint (expected {CHECKPOINTS}/{LATEST} or a model directory)")


def incomplete(ckpt: Path) -> str | None:
    """Why the checkpoint directory ``ckpt`` cannot be loaded (a file missing, a weights file
    shorter than its header says, a config that is not JSON), or None. Reads headers only."""
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        if not (ckpt / name).is_file():
            return f"{ckpt / name}: missing"
    try:
        json.loads((ckpt / CONFIG_NAME).read_text())
    except (OSError, ValueError) as exc:
        return f"{ckpt / CONFIG_NAME}: not readable JSON ({exc})"
    return _safetensors_damage(ckpt / WEIGHTS_NAME)


def _safetensors_damage(file: Path) -> str | None:
    """A safetensors file is an 8-byte header length, a JSON header naming each tensor's byte
    range, then the data: complete when the file holds every range."""
    size = file.stat().st_size
    with file.open("rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            return f"{file}: truncated ({size} bytes; not even a header)"
        (length,) = struct.unpack("<Q", head)
        if length > size - 8:
            return f"{file}: truncated ({size} bytes; its header alone says {length + 8})"
        try:
            header = json.loads(handle.read(length))
            end = max((int(t["data_offsets"][1]) for k, t in header.items() if k != "__metadata__"), default=0)
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            return f"{file}: corrupt header ({exc})"
    if size < 8 + length + end:
        return f"{file}: truncated ({size} bytes of {8 + length + end})"
    return None


def _newest_complete(folder: Path, latest: Path) -> Path:
    """``latest``, or the newest complete step_N before it when ``latest`` is damaged."""
    damage = incomplete(latest)
    if damage is None:
        return latest
    steps = sorted((int(p.name[5:]), p) for p in folder.glob("step_*") if p.name[5:].isdigit() and p != latest)
    for _, earlier in reversed(steps):
        if incomplete(earlier) is None:
            print(f"[k3m] warning: the latest checkpoint is incomplete ({damage}); using {earlier}, the newest "
                  f"complete one", file=sys.stderr, flush=True)
            return earlier
    raise CheckpointError(f"{damage}: the checkpoint is incomplete or corrupt and {folder} holds no complete one; "
                          f"train again or name another checkpoint")


def load_model(ckpt: Path, map_location: str = "cpu") -> K3MModel:
    """The checkpoint's model; a damaged one is a :class:`CheckpointError` naming the file."""
    damage = incomplete(ckpt)
    if damage is not None:
        raise CheckpointError(f"{damage}: not a complete checkpoint; train again or name another checkpoint")
    from safetensors import SafetensorError

    try:
        return K3MModel.from_pretrained(ckpt, map_location=map_location)
    except SafetensorError as exc:  # corrupt beyond what the header check sees
        raise CheckpointError(f"{ckpt / WEIGHTS_NAME}: not a readable checkpoint ({exc})") from None


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    model: K3MModel,
    tokenizer,
    property_order: list[str],
    keep: int = 2,
    write_extra: Optional[Callable[[Path], None]] = None,
) -> Path:
    """Write ``RUN_DIR/checkpoints/step_N`` completely, point ``latest`` at it and keep the
    newest ``keep`` checkpoints (all when ``keep <= 0``). ``write_extra(directory)`` adds the
    caller's files (the trainer state) before the checkpoint becomes visible."""
    ckpt_dir = Path(run_dir) / CHECKPOINTS
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    final = ckpt_dir / f"step_{step}"
    with writing_directory(final) as tmp:  # a leftover of a run resumed from before this step is replaced
        model.save_pretrained(tmp, tokenizer)
        (tmp / PROPERTY_ORDER).write_text(json.dumps(property_order, ensure_ascii=False) + "\n")
        if write_extra is not None:
            write_extra(tmp)
    write_text(ckpt_dir / LATEST, final.name + "\n")
    steps = sorted(int(p.name[5:]) for p in ckpt_dir.glob("step_*") if p.name[5:].isdigit())
    for old in steps[:-keep] if keep > 0 else []:
        shutil.rmtree(ckpt_dir / f"step_{old}", ignore_errors=True)
    return final


@dataclass
class Checkpoint:
    path: Path  # the checkpoint directory
    model: K3MModel
    tokenizer: object  # a transformers fast tokenizer
    property_order: Optional[list[str]]  # None: written before the order was saved


def load_property_order(path: str | Path) -> Optional[list[str]]:
    """The property order a checkpoint (or run dir) was trained with; None for checkpoints
    written before it was saved, which then follow the embedded build's own order."""
    file = find_checkpoint(path) / PROPERTY_ORDER
    return json.loads(file.read_text()) if file.is_file() else None


def load_checkpoint(path: str | Path, map_location: str = "cpu") -> Checkpoint:
    """Model, tokenizer and property order of a checkpoint or run dir (its latest)."""
    ckpt = find_checkpoint(path)
    return Checkpoint(ckpt, load_model(ckpt, map_location), load_tokenizer(ckpt), load_property_order(ckpt))
