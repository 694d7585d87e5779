"""The resolution frozen image features are computed at, chosen for the catalog and the
machine (``image.image_size: 0`` in a frozen-encoder model config).

EfficientNet-Lite0 learned ImageNet at 224 px, and sees a product best at that scale even
when the photo is smaller: on fashion44k's 60x80 photos (stored at 64 px) its pooled features
probe at 76.3% at 224 px against 70.9% at 64 px (DESIGN §4). The cost grows with the square
of the side (per 10k images on 2 CPU cores: about 4 min at 96 px, 9 at 160, 17 at 224;
docs/model.md). So on a GPU the features are computed at 224 px; on a CPU at the largest of
224, 192, 160, 128, 96 px whose computation for the build's images fits the time budget,
from the images/s this machine gives on a few of the build's own images (measured as CPU
time, never assumed); 96 px when none fits (a very large catalog: the budget is then exceeded, and said).
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import numpy as np

CANDIDATES = (224, 192, 160, 128, 96)
CALIBRATION_IMAGES = 32
CHOICE_FILE = "feature_resolution.json"  # in the build: the choice, reused by every later stage


@dataclass(frozen=True)
class ResolutionChoice:
    size: int
    reason: str
    images: int
    rates: dict  # size -> images/s measured here (empty on a GPU)

    def as_dict(self) -> dict:
        return {"image_size": self.size, "reason": self.reason, "images": self.images,
                "images_per_s": {str(k): round(v, 1) for k, v in self.rates.items()}}


def measure_rate(images: np.ndarray, size: int, variant: str = "lite0") -> float:
    """Images/s of the frozen EfficientNet at ``size`` px on ``images`` (one warm-up pass), on
    this machine's cores as if it were otherwise idle: the process's CPU time over its torch
    threads, not the wall time, which other jobs on a shared machine would inflate (the same
    build then gets the same choice whatever else runs)."""
    import torch

    from encoders.frozen import FrozenImage

    model = FrozenImage(variant, size, "cpu", batch_size=len(images))
    model.grid(images[:2])
    started = time.process_time()
    model.grid(images)
    cpu_seconds = time.process_time() - started
    return len(images) / max(cpu_seconds / max(torch.get_num_threads(), 1), 1e-9)


def choose_resolution(build, budget_minutes: float, device: str = "cpu", variant: str = "lite0",
                      log=None) -> ResolutionChoice:
    """The feature resolution for ``build`` (see the module docstring)."""
    count = int(np.asarray(build.has_image).sum())
    if count == 0:
        return ResolutionChoice(CANDIDATES[-1], "the catalog has no image", 0, {})
    if device != "cpu":
        return ResolutionChoice(CANDIDATES[0], f"a GPU ({device})", count, {})
    rows = np.flatnonzero(np.asarray(build.has_image))
    pick = rows[np.linspace(0, len(rows) - 1, min(CALIBRATION_IMAGES, len(rows))).astype(int)]
    sample = np.asarray(build.images[pick])  # spread over the catalog, in its stored size
    rates = {}
    for size in CANDIDATES:
        rates[size] = measure_rate(sample, size, variant)
        minutes = count / rates[size] / 60
        if minutes <= budget_minutes:
            reason = (f"{count} images at {rates[size]:.0f}/s here: {minutes:.1f} min, within the "
                      f"{budget_minutes:g}-min budget")
            return _logged(ResolutionChoice(size, reason, count, rates), log)
    minutes = count / rates[CANDIDATES[-1]] / 60
    reason = (f"{count} images: even {CANDIDATES[-1]} px takes {minutes:.1f} min here, over the {budget_minutes:g}-min "
              "budget (the smallest resolution; a GPU or `k3m pretrain --features --engine ray` shortens it)")
    return _logged(ResolutionChoice(CANDIDATES[-1], reason, count, rates), log)


def _logged(choice: ResolutionChoice, log) -> ResolutionChoice:
    (log or (lambda m: print(f"[k3m features] {m}", file=sys.stderr, flush=True)))(
        f"image features at {choice.size} px: {choice.reason}")
    return choice


def resolution_for_build(build, budget_minutes: float, device: str = "cpu", variant: str = "lite0", log=None) -> ResolutionChoice:
    """The choice made for this build before with the same budget, device kind and encoder
    (``BUILD/feature_resolution.json``): pretraining, ``--features`` and the evaluation's
    baselines then read the same features; else a new choice, recorded there."""
    import json

    from etl.atomic import write_text

    path = build.path / CHOICE_FILE
    key = {"budget_minutes": budget_minutes, "device": device, "variant": variant, "images": int(np.asarray(build.has_image).sum())}
    if path.is_file():
        try:
            saved = json.loads(path.read_text())
        except ValueError:
            saved = {}
        if saved.get("key") == key:
            choice = ResolutionChoice(int(saved["image_size"]), saved["reason"] + " (chosen before for this build)",
                                      int(saved["images"]), {int(k): v for k, v in saved.get("images_per_s", {}).items()})
            return _logged(choice, log)
    choice = choose_resolution(build, budget_minutes, device, variant, log)
    write_text(path, json.dumps({**choice.as_dict(), "key": key}, indent=2) + "\n")
    return choice
