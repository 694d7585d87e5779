"""What the feature cache asks an engine to compute: one table's missing rows.

A :class:`FeatureJob` names the table, the keys of the rows to add and their inputs (texts
as an Arrow string array, or build rows of the image store); :class:`Encoders` turns a
slice of inputs into rows. The local engine (:func:`run_local`) and the Ray engine
(``encoders.ray_features``) both use them, so both give the same rows; only where the
encoders run differs. Rows are appended to the table every ``save_every`` inputs, so an
interrupted extraction resumes where it stopped.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

KINDS = ("tokens", "pooled", "grid")  # title token features | mean-pooled text | image grid tokens
SAVE_EVERY = 16384


@dataclass
class FeatureJob:
    table: str  # the table it fills: title | pair | string | text | image
    what: str  # what its inputs are, for messages: "titles", "images"
    keys: np.ndarray  # uint8 [m, 16], one per input
    kind: str  # one of KINDS
    max_tokens: int = 0  # text kinds: truncation
    texts: Optional[object] = None  # pyarrow string array [m] (text kinds)
    image_rows: Optional[np.ndarray] = None  # int64 [m] rows of ``images_path`` (grid)
    images_path: Optional[Path] = None  # the build's images.npy

    def __len__(self) -> int:
        return len(self.keys)

    def inputs(self, lo: int, hi: int):
        """Inputs [lo, hi): a list of texts, or uint8 pixels [n, S, S, 3]."""
        if self.kind == "grid":
            images = np.load(self.images_path, mmap_mode="r")
            return np.asarray(images[self.image_rows[lo:hi]])
        return self.texts.slice(lo, hi - lo).to_pylist()


@dataclass(frozen=True)
class EncoderSettings:
    """Which frozen encoders (plain values: they travel to other processes and machines)."""

    text: str = "minilm"
    image_variant: str = "lite0"
    image_size: int = 96
    grid_cells: int = 3
    batch_size: int = 256
    threads: Optional[int] = None  # torch threads of a worker process (None: leave as is)


class Encoders:
    """The frozen encoders, each loaded on first use."""

    def __init__(self, settings: EncoderSettings, device: str = "cpu"):
        self.settings, self.device = settings, device
        self._text = self._image = None
        if settings.threads:
            import torch

            torch.set_num_threads(settings.threads)

    def text(self):
        if self._text is None:
            from encoders.frozen import FrozenText

            self._text = FrozenText(self.settings.text, self.device, self.settings.batch_size)
        return self._text

    def image(self):
        if self._image is None:
            from encoders.frozen import FrozenImage

            self._image = FrozenImage(self.settings.image_variant, self.settings.image_size, self.device,
                                      max(self.settings.batch_size // 2, 1), self.settings.grid_cells)
        return self._image

    def __call__(self, kind: str, max_tokens: int, inputs):
        """Rows of ``inputs``: a list of float16 [L_i, H] (tokens), or float16 [n, ...]."""
        if kind == "tokens":
            return self.text().tokens(inputs, max_tokens)
        if kind == "pooled":
            return self.text().pooled(inputs, max_tokens).astype(np.float16)
        if kind == "grid":
            return self.image().grid(inputs)
        raise ValueError(f"unknown feature kind {kind!r}")


def run_local(job: FeatureJob, encoders: Encoders, append: Callable[[np.ndarray, object], None],
              progress: bool, log: Callable[[str], None], where: str, chunk: int = 2048,
              save_every: int = SAVE_EVERY) -> None:
    """Encode the job's inputs in this process, ``chunk`` at a time."""
    from tqdm import tqdm

    started = time.perf_counter()
    out: list = []
    saved = 0
    with tqdm(total=len(job), unit=job.what[:-1], desc=f"features: {job.what}", disable=not progress,
              file=sys.stderr) as bar:
        for lo in range(0, len(job), chunk):
            hi = min(lo + chunk, len(job))
            part = encoders(job.kind, job.max_tokens, job.inputs(lo, hi))
            out.extend(part) if job.kind == "tokens" else out.append(part)
            bar.update(hi - lo)
            if hi - saved >= save_every or hi == len(job):
                append(job.keys[saved:hi], out if job.kind == "tokens" else np.concatenate(out))
                out, saved = [], hi
    seconds = time.perf_counter() - started
    log(f"{len(job)} {job.what} encoded in {seconds:.1f}s ({len(job) / max(seconds, 1e-9):.0f}/s) -> {where}")
