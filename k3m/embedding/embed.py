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

import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from etl.catalog_build import CatalogBuild
from etl.errors import InvalidValue
from etl.string_arrays import OPTIONAL_STRINGS, STRINGS, missing, parquet_strings
from etl.sync import manifest_sha256
from k3m.data import FACTS, index_for
from k3m.embedding.ann_index import AnnSettings
from k3m.embedding.encoder import ItemEncoder
from k3m.embedding.store import EmbeddingStore, NonFiniteVectors, StoreWriter, check_model_id, non_finite_rows
from k3m.model.run import ResolvedRun

ENGINES = ("local", "ray")  # where the items run: this process, or Ray Data (k3m.embedding.ray_embed)


@dataclass(frozen=True)
class EmbedSettings:
    batch_size: int = 256  # items per forward pass (256: ~8% faster than 128 on 2 cores, a few MB of activations)
    device: str = "auto"  # auto = cuda when available, else cpu
    dtype: str = "float32"  # stored dtype of c*: float32 | float16
    facts: str = "train"  # triples the model reads: train | all (see module docstring)
    model_id: str | None = None  # None = derived from the checkpoint (run-step-weights hash)
    chunk: int = 2048  # items between progress reports
    recompute: bool = False  # recompute even when the store already holds this model's embeddings
    # the nearest-neighbour index written with the store (built once, inside the store's atomic
    # write; ``kind="exact"``: none): the embedding of a large catalog never builds one only to drop it
    index: AnnSettings = field(default_factory=AnnSettings)

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


def weights_sha256(checkpoint) -> str:
    return ResolvedRun.resolve(checkpoint).weights_sha256


def model_id_for(checkpoint) -> str:
    """``<run>-<step>-<sha256 of the weights, 10 hex>`` (:attr:`ResolvedRun.model_id`)."""
    return ResolvedRun.resolve(checkpoint).model_id


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


@dataclass
class EmbedPlan:
    """What an embed of a build has to do, worked out before any vector is computed (and
    shared by the engines: this process, or Ray Data, k3m.embedding.ray_embed)."""

    run: ResolvedRun
    build: CatalogBuild
    model_id: str
    settings: EmbedSettings
    weights: str
    manifest_sha: str
    ids: np.ndarray  # StringDType [N]
    reuse: Optional[EmbeddingStore] = None  # the store already holds exactly these embeddings
    previous: Optional[EmbeddingStore] = None  # this model's store of an earlier version of the build

    @property
    def existing(self) -> EmbeddingStore:
        return EmbeddingStore(EmbeddingStore.root(self.build.path) / self.model_id)


def plan_embed(checkpoint, build_path, settings: EmbedSettings) -> EmbedPlan:
    build = CatalogBuild.open(build_path)
    run = ResolvedRun.resolve(checkpoint)
    weights = run.weights_sha256
    model_id = check_model_id(settings.model_id or run.model_id)
    plan = EmbedPlan(run, build, model_id, settings, weights, manifest_sha256(build.path),
                     parquet_strings(build.path / "items.parquet", "item_id"))
    existing = plan.existing
    if not settings.recompute and (existing.path / "meta.json").is_file():
        meta = existing.meta
        if (meta.get("facts"), meta.get("dtype"), meta.get("weights_sha256", weights)) == (settings.facts, settings.dtype, weights):
            if meta.get("build_manifest_sha256") == plan.manifest_sha:
                existing.check_build(build)
                plan.reuse = existing
            else:
                plan.previous = existing
    return plan


def carried_rows(previous: EmbeddingStore | None, ids: np.ndarray, digests: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows, previous rows) of the items whose input digest is the one ``previous`` stored:
    their vectors are copied, bit for bit, with their ``created``."""
    if previous is None:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    old = previous.row_index.find(ids)
    known = old >= 0
    old_digests = np.full(len(ids), None, dtype=OPTIONAL_STRINGS)
    old_digests[known] = previous.input_digests[old[known]]
    have = known & ~missing(digests) & ~missing(old_digests)
    same = np.zeros(len(ids), bool)
    same[have] = digests[have] == old_digests[have]
    rows = np.flatnonzero(same)
    return rows, old[rows]


def embed_build(checkpoint, build_path: str | Path, settings: EmbedSettings = EmbedSettings(), progress=None,
                engine: str = "local", address: str | None = None, workers: int | None = None):
    """Compute (or reuse, or bring up to date) the build's embeddings; returns (EmbeddingStore,
    EmbedReport). ``checkpoint``: a checkpoint or run directory, or a :class:`ResolvedRun`.

    Memory is bounded by the chunk, not the catalog: vectors go straight into the store's
    files (:class:`StoreWriter`), ids, times and digests are numpy string arrays. ``engine="ray"``: the items run on Ray Data (an actor pool of encoders; ``address``
    of a cluster, else $RAY_ADDRESS, else a local Ray of ``workers`` actors); the store is
    the same."""
    started = time.perf_counter()
    if engine not in ENGINES:
        raise InvalidValue(f"engine must be one of {ENGINES}, got {engine!r}")
    plan = plan_embed(checkpoint, build_path, settings)
    build, run, ids = plan.build, plan.run, plan.ids
    device = resolve_device(settings.device)
    if plan.reuse is not None:
        meta = plan.reuse.meta
        return plan.reuse, EmbedReport(plan.model_id, str(plan.reuse.path), meta["items"], meta["dim"], str(device), True,
                                       time.perf_counter() - started)

    model = run.load_model().to(device).eval()
    index = index_for(build, model.config, facts=settings.facts, property_order=run.property_order)
    encoder = ItemEncoder(model, run.tokenizer, index, batch_size=settings.batch_size)
    file_digests = (parquet_strings(build.path / "items.parquet", "image_digest", optional=True)
                    if "image_digest" in _columns(build) else None)
    digests = encoder.input_digests(np.arange(build.num_items), build.images, file_digests)
    carried, old_rows = carried_rows(plan.previous, ids, digests)
    todo = np.setdiff1d(np.arange(build.num_items, dtype=np.int64), carried)
    # c* beside the item vector when they differ (a kept path): what completion's LPM scores
    kept = model.config.embedding_size != model.config.hidden_size
    now = _now()
    created = np.full(build.num_items, now, dtype=STRINGS)
    if len(carried):
        created[carried] = plan.previous.created[old_rows]
    with StoreWriter(build.path, plan.model_id, ids, model.config.embedding_size, settings.dtype,
                     model.config.hidden_size if kept else None, index_settings=settings.index) as writer:
        if len(carried):
            writer.copy(carried, plan.previous, old_rows)
        if engine == "ray":
            from k3m.embedding.ray_embed import embed_on_ray

            embed_on_ray(run, index, settings, todo, writer, kept, progress, address=address, workers=workers)
        else:
            autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
            with torch.inference_mode(), autocast:
                for start in range(0, len(todo), settings.chunk):
                    part = todo[start:start + settings.chunk]
                    vectors, reprs = encoder.encode_both(part)
                    writer.write(part, vectors.numpy(), reprs.numpy() if kept else None)
                    if progress:
                        progress(min(start + settings.chunk, len(todo)), len(todo))
        with torch.inference_mode():
            props = encoder.property_vectors().numpy()
            values = encoder.value_vectors().numpy()
        _check_finite(run.path, build, props, values)
        seconds = time.perf_counter() - started
        meta = {
            "checkpoint": str(run.path.resolve()),
            "weights_sha256": plan.weights,
            "created": now if len(todo) else _now(),
            "facts": settings.facts,
            "lpm_norm": int(model.config.lpm.norm),
            "build_manifest_sha256": plan.manifest_sha,
            "computed": int(len(todo)),
            "reused": int(build.num_items - len(todo)),
            "device": str(device) if engine == "local" else "ray",
            "seconds": round(seconds, 3),
        }
        store = writer.finish(created, digests, props, values, meta)
    return store, EmbedReport(plan.model_id, str(store.path), build.num_items, int(model.config.embedding_size),
                              meta["device"], False, seconds, computed=int(len(todo)))


def _columns(build) -> list[str]:
    import pyarrow.parquet as pq

    return pq.ParquetFile(build.path / "items.parquet").schema_arrow.names


def _check_finite(ckpt: Path, build, props, values) -> None:
    """No NaN or inf property or value vector reaches the store (item vectors are checked as
    they are written, :class:`StoreWriter`)."""
    where = (f"nothing was written; the weights of {ckpt} or the inputs the model read (the feature cache) "
             f"hold NaN or inf")
    for what, vectors, names in (("property", props, build.properties), ("value", values, build.values)):
        bad = non_finite_rows(vectors)
        if len(bad):
            raise NonFiniteVectors.of(what, [names[k] for k in bad.tolist()], len(vectors), where)
