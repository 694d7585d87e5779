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

Incremental: after the build changed (``k3m import --update``), the same checkpoint's store
is brought up to date by computing only the items whose input changed: every row keeps a
digest of what the model read for it (title, pairs in order, image pixels), and a row whose
digest is unchanged is copied bit for bit, with its ``created`` time (so the write-back
skips it too). The model is inductive: nothing else of an item's c* depends on the catalog.
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
from etl.errors import InvalidValue
from etl.sync import manifest_sha256
from k3m.data import FACTS, index_for
from k3m.embedding.encoder import ItemEncoder
from k3m.embedding.store import EmbeddingStore, NonFiniteVectors, check_model_id, non_finite_rows, write_store
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

    def __post_init__(self):
        if self.batch_size < 1 or self.chunk < 1:
            raise InvalidValue(f"batch size must be positive, got {self.batch_size}")
        if self.facts not in FACTS:
            raise InvalidValue(f"facts must be one of {FACTS}, got {self.facts!r}")


@dataclass
class EmbedReport:
    model_id: str
    store: str
    items: int
    dim: int
    device: str
    reused: bool  # the store already held these embeddings
    seconds: float
    computed: int = 0  # rows run through the model (the others were current already)

    @property
    def items_per_s(self) -> float:
        return self.computed / self.seconds if self.seconds and self.computed else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "items_per_s": round(self.items_per_s, 1)}


def weights_sha256(checkpoint: str | Path) -> str:
    digest = hashlib.sha256()
    with open(find_checkpoint(checkpoint) / WEIGHTS_NAME, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_id_for(checkpoint: str | Path, weights: str | None = None) -> str:
    """``<run>-<step>-<sha256 of the weights, 10 hex>``: readable and exact (two runs that
    share a name never share an id)."""
    ckpt = find_checkpoint(checkpoint)
    run = ckpt.parent.parent.name if ckpt.parent.name == "checkpoints" else ckpt.parent.name
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{run}-{ckpt.name}").strip("._-") or "k3m"
    return f"{name[:100]}-{(weights or weights_sha256(ckpt))[:10]}"


def _check_finite(ckpt: Path, build, ids, embeddings, todo, props, values) -> None:
    """No NaN or inf vector reaches the store or the graph: the items (and property or value
    names) whose vectors are not finite are named, and nothing is written."""
    where = (f"nothing was written; the weights of {ckpt} or the inputs the model read (the feature cache) "
             f"hold NaN or inf")
    bad = non_finite_rows(embeddings, todo)
    if len(bad):
        raise NonFiniteVectors.of("item", ids[todo[bad]], len(todo), where)
    for what, vectors, names in (("property", props, build.properties), ("value", values, build.values)):
        bad = non_finite_rows(vectors)
        if len(bad):
            raise NonFiniteVectors.of(what, [names[k] for k in bad.tolist()], len(vectors), where)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def embed_build(checkpoint: str | Path, build_path: str | Path, settings: EmbedSettings = EmbedSettings(),
                progress=None):
    """Compute (or reuse, or bring up to date) the build's embeddings; returns (EmbeddingStore, EmbedReport)."""
    started = time.perf_counter()
    build = CatalogBuild.open(build_path)
    ckpt = find_checkpoint(checkpoint)
    weights = weights_sha256(ckpt)
    model_id = check_model_id(settings.model_id or model_id_for(ckpt, weights))
    manifest_sha = manifest_sha256(build.path)
    device = resolve_device(settings.device)

    existing = EmbeddingStore(EmbeddingStore.root(build.path) / model_id)
    previous = None  # this model's store of an earlier version of the build
    if not settings.recompute and (existing.path / "meta.json").is_file():
        meta = existing.meta
        if (meta.get("facts"), meta.get("dtype"), meta.get("weights_sha256", weights)) == (settings.facts, settings.dtype, weights):
            if meta.get("build_manifest_sha256") == manifest_sha:
                existing.check_build(build)
                return existing, EmbedReport(model_id, str(existing.path), meta["items"], meta["dim"], str(device), True,
                                             time.perf_counter() - started)
            previous = existing

    loaded = load_checkpoint(ckpt)
    model = loaded.model.to(device).eval()
    index = index_for(build, model.config, facts=settings.facts, property_order=loaded.property_order)
    encoder = ItemEncoder(model, loaded.tokenizer, index, batch_size=settings.batch_size)
    ids = build.items["item_id"].to_numpy(dtype=object)
    file_digests = build.items["image_digest"].to_numpy(dtype=object) if "image_digest" in build.items else None
    digests = encoder.input_digests(np.arange(build.num_items), build.images, file_digests)
    embeddings = np.zeros((build.num_items, model.config.embedding_size), np.float32)
    # c* beside the item vector when they differ (a kept path): what completion's LPM scores
    kept = model.config.embedding_size != model.config.hidden_size
    item_repr = np.zeros((build.num_items, model.config.hidden_size), np.float32) if kept else None
    created = np.full(build.num_items, datetime.now(timezone.utc).isoformat(timespec="microseconds"), dtype=object)
    todo = np.arange(build.num_items, dtype=np.int64)
    if previous is not None:
        old_row, old_digests = previous.row_of, previous.input_digests
        pairs = [(row, old_row[item_id]) for row, item_id in enumerate(ids.tolist())
                 if digests[row] is not None and item_id in old_row and old_digests[old_row[item_id]] == digests[row]]
        if pairs:
            rows, old = (np.array(x, dtype=np.int64) for x in zip(*pairs))
            embeddings[rows] = np.asarray(previous.matrix[old], dtype=np.float32)  # float16 -> 32 -> 16 is exact
            if kept:
                item_repr[rows] = np.asarray(previous.item_repr[old], dtype=np.float32)
            created[rows] = previous.created[old]
            todo = np.setdiff1d(todo, rows)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    with torch.inference_mode(), autocast:
        for start in range(0, len(todo), settings.chunk):
            part = todo[start:start + settings.chunk]
            vectors, reprs = encoder.encode_both(part)
            embeddings[part] = vectors.numpy()
            if kept:
                item_repr[part] = reprs.numpy()
            if progress:
                progress(min(start + settings.chunk, len(todo)), len(todo))
        props = encoder.property_vectors().numpy()
        values = encoder.value_vectors().numpy()
    _check_finite(ckpt, build, ids, embeddings, todo, props, values)
    seconds = time.perf_counter() - started
    meta = {
        "checkpoint": str(ckpt.resolve()),
        "weights_sha256": weights,
        "created": created[todo[0]] if len(todo) else datetime.now(timezone.utc).isoformat(timespec="microseconds"),
        "facts": settings.facts,
        "lpm_norm": int(model.config.lpm.norm),
        "build_manifest_sha256": manifest_sha,
        "computed": int(len(todo)),
        "reused": int(build.num_items - len(todo)),
        "device": str(device),
        "seconds": round(seconds, 3),
    }
    store = write_store(build.path, model_id, ids, embeddings, props, values, meta, settings.dtype,
                        created=created, input_digests=np.array(digests, dtype=object), item_repr=item_repr)
    return store, EmbedReport(model_id, str(store.path), build.num_items, int(embeddings.shape[1]), str(device), False,
                              seconds, computed=int(len(todo)))
