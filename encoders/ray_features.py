"""The feature cache's Ray engine: a table's missing rows computed by Ray Data.

``FeatureCache.for_build(..., engine="ray")`` hands its jobs (:mod:`encoders.feature_job`)
here. Each job becomes a dataset of (position, input) rows — the texts themselves, or the
build rows of images, which the actors read from the build's ``images.npy`` — mapped with
``map_batches`` over an actor pool of :class:`EncoderActor` (the same :class:`Encoders` the
local engine runs; one GPU per actor when the cluster has GPUs). The driver streams the
results back and appends them to the cache's table itself, so the cache's format, its lock
and its checks are the same as with the local engine; rows may come back in any order
(each carries its position, hence its content key).

Where: ``address`` (``ray start --head`` prints it; ``auto`` for the cluster this machine
belongs to), else ``$RAY_ADDRESS``, else a Ray started here for the call with ``workers``
actors. On a cluster the project must be installed on every node, and the build directory
readable at the same path (a shared filesystem), as for any Ray Data source; only the
driver writes the cache. See docs/scale.md.

Ray is imported only here, and only when this engine is asked for.
"""
from __future__ import annotations

import logging
import os
import time
from typing import Callable, Optional

import numpy as np

from encoders.feature_job import SAVE_EVERY, EncoderSettings, Encoders, FeatureJob

BLOCK_INPUTS = 512  # inputs per dataset block: what one actor call takes at most


class RayMissing(ValueError):
    exit_code = 2


def _import_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise RayMissing("the ray engine needs Ray Data, which is not installed: pip install 'k3m-pkg[scale]' "
                         f"(ray[data]; {exc})") from None
    return ray


class EncoderActor:
    """One actor of the pool: the frozen encoders, loaded once, applied to batches."""

    def __init__(self, settings: EncoderSettings, kind: str, max_tokens: int, images_path: Optional[str], device: str):
        self.encoders = Encoders(settings, device)
        self.kind, self.max_tokens = kind, max_tokens
        self.images = np.load(images_path, mmap_mode="r") if images_path else None

    def __call__(self, batch: dict) -> dict:
        positions = np.asarray(batch["position"], np.int64)
        if self.kind == "grid":
            rows = np.asarray(batch["row"], np.int64)
            return {"position": positions, "grid": self.encoders("grid", 0, np.asarray(self.images[rows]))}
        texts = [str(t) for t in batch["text"]]
        out = self.encoders(self.kind, self.max_tokens, texts)
        if self.kind == "pooled":
            return {"position": positions, "vectors": out}
        # token rows of different lengths: padded to max_tokens, with their lengths
        width = out[0].shape[1] if out else 0
        tokens = np.zeros((len(out), self.max_tokens, width), np.float16)
        for i, t in enumerate(out):
            tokens[i, : len(t)] = t
        return {"position": positions, "tokens": tokens, "length": np.array([len(t) for t in out], np.int64)}


def _connect(ray, address: Optional[str], workers: int, log) -> bool:
    """Connect to Ray; True when this call started a local Ray (and must stop it)."""
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no reporting home from the machines
    if address:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
        log(f"ray: connected to {address}: {ray.cluster_resources()}")
        return False
    ray.init(num_cpus=workers, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False,
             object_store_memory=int(os.environ.get("K3M_RAY_OBJECT_STORE_BYTES", 1 << 30)))
    return True


def _dataset(ray, job: FeatureJob):
    import pyarrow as pa

    blocks = []
    for lo in range(0, len(job), BLOCK_INPUTS):
        hi = min(lo + BLOCK_INPUTS, len(job))
        columns = {"position": pa.array(np.arange(lo, hi, dtype=np.int64))}
        if job.kind == "grid":
            columns["row"] = pa.array(np.asarray(job.image_rows[lo:hi], np.int64))
        else:
            columns["text"] = job.texts.slice(lo, hi - lo)
        blocks.append(pa.table(columns))
    return ray.data.from_arrow(blocks)


def run_on_ray(jobs: list[FeatureJob], settings: EncoderSettings, appenders: dict[str, Callable], progress: bool,
               log: Callable[[str], None], where: str, address: Optional[str] = None, workers: Optional[int] = None,
               save_every: int = SAVE_EVERY) -> None:
    """Compute every job on Ray, appending each one's rows to its table (``appenders``)."""
    ray = _import_ray()
    workers = workers or 2
    started_here = _connect(ray, address, workers, log)
    try:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = progress
        context.print_on_execution_start = progress
        gpus = int(ray.cluster_resources().get("GPU", 0))
        for job in jobs:
            _run_job(ray, job, settings, appenders[job.table], log, where, workers, gpus, save_every)
    finally:
        if started_here:
            ray.shutdown()


def _run_job(ray, job: FeatureJob, settings: EncoderSettings, append: Callable, log, where: str, workers: int,
             gpus: int, save_every: int) -> None:
    started = time.perf_counter()
    if gpus:  # one GPU per actor, as many actors as GPUs (the batch fills the GPU)
        actors, resources, device = gpus, {"num_gpus": 1}, "cuda"
    else:
        actors, resources, device = workers, {"num_cpus": settings.threads or 1}, "cpu"
    images_path = str(job.images_path) if job.kind == "grid" else None
    dataset = _dataset(ray, job).map_batches(
        EncoderActor, fn_constructor_kwargs={"settings": settings, "kind": job.kind, "max_tokens": job.max_tokens,
                                             "images_path": images_path, "device": device},
        batch_size=min(settings.batch_size, BLOCK_INPUTS), concurrency=actors, batch_format="numpy", **resources)
    positions: list[np.ndarray] = []
    rows: list = []
    done = pending = 0
    for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
        where_in_job = np.asarray(batch["position"], np.int64)
        positions.append(where_in_job)
        if job.kind == "tokens":
            rows.extend(t[:n] for t, n in zip(batch["tokens"], batch["length"]))
        else:
            rows.append(np.asarray(batch["vectors" if job.kind == "pooled" else "grid"]))
        pending += len(where_in_job)
        if pending >= save_every:
            done += _save(job, positions, rows, append)
            positions, rows, pending = [], [], 0
    if pending:
        done += _save(job, positions, rows, append)
    if done != len(job):
        raise RuntimeError(f"ray gave {done} of the {len(job)} {job.what} asked for")
    seconds = time.perf_counter() - started
    log(f"{len(job)} {job.what} encoded in {seconds:.1f}s ({len(job) / max(seconds, 1e-9):.0f}/s) -> {where}/{job.table} "
        f"(ray: {actors} {'GPU' if gpus else 'CPU'} actors)")


def _save(job: FeatureJob, positions: list[np.ndarray], rows: list, append: Callable) -> int:
    where = np.concatenate(positions)
    append(job.keys[where], rows if job.kind == "tokens" else np.concatenate(rows))
    return len(where)
