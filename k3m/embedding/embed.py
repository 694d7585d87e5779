"""Item representations c* for every item of a build (``k3m embed``, k3m.embedding.cli).

The model reads each item's title, image and triples (inductive: a build imported after
pretraining is embedded by the same checkpoint, no retraining). Batches run on the GPU when
one is present (bf16 autocast). Besides c*, the store keeps the LPM vectors of every
property and value of the build, so attribute completion needs no model at query time.

``facts``: ``train`` (default) feeds the model only the build's train triples, so held-out
facts stay unseen and completion's precision on them is honest; ``all`` feeds every triple
(use it for production embeddings of a catalog). Re-running with the same checkpoint reuses
the stored embeddings (``--recompute`` forces) and the graph write-back skips items that
already carry them (``--force`` rewrites).
"""
from __future__ import annotations

import hashlib
import re
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from etl.catalog_build import CatalogBuild
from k3m.data import FACTS, index_for
from k3m.embedding.encoder import ItemEncoder
from k3m.embedding.store import EmbeddingStore, check_model_id, write_store
from k3m.model import WEIGHTS_NAME
from k3m.model.checkpoint import find_checkpoint, load_checkpoint


@dataclass(frozen=True)
class EmbedSettings:
    batch_size: int = 128  # items per forward pass
    device: str = "auto"  # auto = cuda when available, else cpu
    dtype: str = "float32"  # stored dtype of c*: float32 | float16
    facts: str = "train"  # triples the model reads: train | all (see module docstring)
    model_id: str | None = None  # None = derived from the checkpoint (run-step-weights hash)
    chunk: int = 2048  # items between progress reports
    recompute: bool = False  # recompute even when the store already holds this model's embeddings


@dataclass
class EmbedReport:
    model_id: str
    store: str
    items: int
    dim: int
    device: str
    reused: bool  # the store already held these embeddings
    seconds: float

    @property
    def items_per_s(self) -> float:
        return self.items / self.seconds if self.seconds and not self.reused else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "items_per_s": round(self.items_per_s, 1)}


def model_id_for(checkpoint: str | Path) -> str:
    """``<run>-<step>-<sha256 of the weights, 10 hex>``: readable and exact (two runs that
    share a name never share an id)."""
    ckpt = find_checkpoint(checkpoint)
    digest = hashlib.sha256()
    with open(ckpt / WEIGHTS_NAME, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    run = ckpt.parent.parent.name if ckpt.parent.name == "checkpoints" else ckpt.parent.name
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{run}-{ckpt.name}").strip("._-") or "k3m"
    return f"{name[:100]}-{digest.hexdigest()[:10]}"


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def embed_build(checkpoint: str | Path, build_path: str | Path, settings: EmbedSettings = EmbedSettings(),
                progress=None):
    """Compute (or reuse) the build's embeddings; returns (EmbeddingStore, EmbedReport)."""
    started = time.perf_counter()
    build = CatalogBuild.open(build_path)
    ckpt = find_checkpoint(checkpoint)
    model_id = check_model_id(settings.model_id or model_id_for(ckpt))
    manifest_sha = hashlib.sha256((build.path / "manifest.json").read_bytes()).hexdigest()
    device = resolve_device(settings.device)

    existing = EmbeddingStore(EmbeddingStore.root(build.path) / model_id)
    if not settings.recompute and (existing.path / "meta.json").is_file():
        meta = existing.meta
        if meta.get("build_manifest_sha256") == manifest_sha and meta.get("facts") == settings.facts and meta.get("dtype") == settings.dtype:
            existing.check_build(build)
            return existing, EmbedReport(model_id, str(existing.path), meta["items"], meta["dim"], str(device), True,
                                         time.perf_counter() - started)

    loaded = load_checkpoint(ckpt)
    model = loaded.model.to(device).eval()
    index = index_for(build, model.config, facts=settings.facts, property_order=loaded.property_order)
    encoder = ItemEncoder(model, loaded.tokenizer, index, batch_size=settings.batch_size)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    rows = np.arange(build.num_items, dtype=np.int64)
    parts = []
    with torch.inference_mode(), autocast:
        for start in range(0, len(rows), settings.chunk):
            parts.append(encoder.encode(rows[start:start + settings.chunk]).numpy())
            if progress:
                progress(min(start + settings.chunk, len(rows)), len(rows))
        props = encoder.property_vectors().numpy()
        values = encoder.value_vectors().numpy()
    embeddings = np.concatenate(parts) if parts else np.zeros((0, model.config.hidden_size), np.float32)
    seconds = time.perf_counter() - started
    meta = {
        "checkpoint": str(ckpt.resolve()),
        "created": datetime.now(timezone.utc).isoformat(timespec="microseconds"),
        "facts": settings.facts,
        "lpm_norm": int(model.config.lpm.norm),
        "build_manifest_sha256": manifest_sha,
        "device": str(device),
        "seconds": round(seconds, 3),
    }
    store = write_store(build.path, model_id, build.items["item_id"].to_numpy(dtype=object), embeddings, props, values,
                        meta, settings.dtype)
    return store, EmbedReport(model_id, str(store.path), len(rows), int(embeddings.shape[1]), str(device), False, seconds)
