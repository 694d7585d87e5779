"""The compared models: K3M and its baselines as modality switches of one architecture.

Every model is the same K3M code with the same encoders, preset and pretraining budget;
only the switches differ (see :mod:`k3m.model.configuration`):

=============  ==========================================  ==============================
name           what it sees                                switches
=============  ==========================================  ==============================
k3m            title, image, knowledge (+ structure agg.)  (defaults)
no_kg          title and image, co-attention only          use_knowledge=False
               (the ViLBERT-style baseline)
pkg_text       title with the knowledge text appended,     use_knowledge=False,
               image; no structure aggregation             knowledge_as_title_text
title_only     title                                       use_image=False, use_knowledge=False
image_only     image                                       use_title=False, use_knowledge=False
=============  ==========================================  ==============================

A model's checkpoint is either user-supplied (``--model name=DIR``) or pretrained here,
with the evaluation's one :class:`~k3m.evaluation.config.PretrainBudget` (same steps, batch
and preset for all) into ``RUN_ROOT/<name>``; a finished pretraining is reused, one made
with another budget is refused. ``RUN_ROOT/<name>.lock`` makes concurrent pretrainings of
one model wait for each other, so ``k3m evaluate --pretrain-only`` can pretrain the later
models beside a running grid (on a second core) without both writing one run.
"""
from __future__ import annotations

import fcntl
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from etl.errors import InvalidValue
from k3m.evaluation.baselines import BASELINES
from k3m.model.run import ResolvedRun
from k3m.training import TrainConfig, train
from k3m.training.checkpointing import TRAIN_CONFIG


@dataclass(frozen=True)
class ModelSpec:
    name: str
    label: str
    switches: dict = field(default_factory=dict)  # K3MConfig top-level overrides
    knowledge_as_title_text: bool = False


MODELS: dict[str, ModelSpec] = {
    m.name: m
    for m in (
        ModelSpec("k3m", "K3M"),
        ModelSpec("no_kg", "no KG (ViLBERT-style)", {"use_knowledge": False}),
        ModelSpec("pkg_text", "+PKG as text", {"use_knowledge": False}, knowledge_as_title_text=True),
        ModelSpec("title_only", "title only", {"use_image": False, "use_knowledge": False}),
        ModelSpec("image_only", "image only", {"use_title": False, "use_knowledge": False}),
    )
}
ANCHOR_LABEL = "TransE (PyKEEN)"


def label(name: str) -> str:
    if name in BASELINES:
        return BASELINES[name].label
    return MODELS[name].label if name in MODELS else ANCHOR_LABEL if name == "transe" else name


def pretrain_overrides(spec: ModelSpec) -> list[str]:
    """``--set`` assignments that turn the shared training config into this model's."""
    out = [f"model.{key}={str(value).lower()}" for key, value in spec.switches.items()]
    if spec.knowledge_as_title_text:
        out.append("knowledge_as_title_text=true")
    return out


@dataclass
class PretrainResult:
    run_dir: Path
    seconds: float  # for a reused run: the wall time its summary recorded (0.0 when it has none)
    reused: bool


def pretrain_model(spec: ModelSpec, budget, build: str, seed: int, wait: bool = True) -> PretrainResult | None:
    """Pretrain ``spec`` under ``budget`` into ``budget.run_root/<name>`` (reused if done).

    Holds ``<run_root>/<name>.lock`` while it checks and trains; another process pretraining
    the same model is waited for (``wait=True``) or skipped, returning None (``wait=False``)."""
    run_root = Path(budget.run_root)
    run_root.mkdir(parents=True, exist_ok=True)
    with open(run_root / f"{spec.name}.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None
        return _pretrain_locked(spec, budget, build, seed, run_root / spec.name)


def _pretrain_locked(spec: ModelSpec, budget, build: str, seed: int, run_dir: Path) -> PretrainResult:
    overrides = list(budget.overrides) + pretrain_overrides(spec) + [f"build={build}", f"run_dir={run_dir}", f"seed={seed}"]
    cfg = TrainConfig.load(budget.config, overrides)
    saved = run_dir / "train_config.yaml"
    if saved.is_file() and TrainConfig.load(saved).to_dict() != cfg.to_dict():
        raise InvalidValue(f"{run_dir} was pretrained with another config; use another out_dir or remove it")
    try:
        checkpoint = ResolvedRun.resolve(run_dir)
    except FileNotFoundError:
        checkpoint = None
    summary = run_dir / "summary.json"
    if checkpoint is not None and summary.is_file():
        return PretrainResult(run_dir, float(json.loads(summary.read_text()).get("wall_seconds", 0.0)), True)
    start = time.perf_counter()
    train(cfg, resume=checkpoint)  # an interrupted run continues
    return PretrainResult(run_dir, time.perf_counter() - start, False)


def load_model(spec: ModelSpec, path: "str | Path | ResolvedRun", device: str = "cpu"):
    """(model in eval mode, tokenizer) of a checkpoint dir, a pretraining run dir or a
    :class:`ResolvedRun`, refused when its modality switches are not the ones ``spec`` names
    (a mislabelled baseline)."""
    loaded = ResolvedRun.resolve(path).load()
    model, tokenizer, train_config = loaded.model, loaded.tokenizer, TrainConfig.load(loaded.path / TRAIN_CONFIG)
    wanted = {"use_title": True, "use_image": True, "use_knowledge": True, **spec.switches}
    found = {key: getattr(model.config, key) for key in wanted}
    found_text = bool(getattr(train_config, "knowledge_as_title_text", False))
    if found != wanted or found_text != spec.knowledge_as_title_text:
        raise InvalidValue(
            f"{path} is not a {spec.name} checkpoint: it has {found}, knowledge_as_title_text={found_text}; "
            f"{spec.name} needs {wanted}, knowledge_as_title_text={spec.knowledge_as_title_text}"
        )
    return model.to(device).eval(), tokenizer
