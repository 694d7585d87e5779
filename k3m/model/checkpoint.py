"""Checkpoints of a pretraining run: where they are, what one holds, how to load one.

Layout (written by :func:`save_checkpoint`, read by everything that uses a trained model)::

    RUN_DIR/checkpoints/step_N/        k3m_config.json + model.safetensors (K3MModel.save_pretrained),
                                       the tokenizer's files, property_order.json, and whatever
                                       the writer adds (training: trainer_state.pt, train_config.yaml)
    RUN_DIR/checkpoints/latest         name of the newest complete checkpoint

A checkpoint directory is written into a hidden sibling and renamed into place, and
``latest`` moves only after that, so a crash never leaves a half checkpoint that looks done.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from encoders.text import load_tokenizer
from etl.atomic import write_text, writing_directory
from k3m.model.configuration import CONFIG_NAME
from k3m.model.modeling import WEIGHTS_NAME, K3MModel

CHECKPOINTS = "checkpoints"
LATEST = "latest"
# the order of an item's pairs the model learned with; embedding another build follows it
PROPERTY_ORDER = "property_order.json"


def find_checkpoint(path: str | Path) -> Path:
    """A checkpoint dir, or a run dir / checkpoints dir -> its ``latest`` checkpoint."""
    path = Path(path)
    for candidate in (path, path / CHECKPOINTS):
        if (candidate / LATEST).is_file():
            return candidate / (candidate / LATEST).read_text().strip()
    if (path / CONFIG_NAME).is_file() and (path / WEIGHTS_NAME).is_file():
        return path
    raise FileNotFoundError(f"{path}: no checkpoint (expected {CHECKPOINTS}/{LATEST} or a model directory)")


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
    return Checkpoint(ckpt, K3MModel.from_pretrained(ckpt, map_location=map_location), load_tokenizer(ckpt),
                      load_property_order(ckpt))
