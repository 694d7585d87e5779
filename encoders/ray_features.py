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
    """One actor of the pool: the frozen encoders (each loaded on first use), applied to
    batches that may mix jobs; every output row is a 2-D float16 array (token rows [L, H],
    a vector [1, H], a grid [g*g, F])."""

    def __init__(self, settings: EncoderSettings, jobs: list[tuple[str, int]], images_path: Optional[str], device: str):
        self.encoders = Encoders(settings, device)
        self.jobs = jobs  # (kind, max_tokens) per job number
        self.images = np.load(images_path, mmap_mode="r") if images_path else None

    def __call__(self, batch: dict) -> dict:
        job_of = np.asarray(batch["job"], np.int64)
        payload = np.empty(len(job_of), dtype=object)
        for job in np.unique(job_of).tolist():
            at = np.flatnonzero(job_of == job)
            kind, max_tokens = self.jobs[job]
            if kind == "grid":
                out = self.encoders(kind, 0, np.asarray(self.images[np.asarray(batch["row"], np.int64)[at]]))
            else:
                out = self.encoders(kind, max_tokens, [str(batch["text"][i]) for i in at])
                out = list(out) if kind == "tokens" else [v[None] for v in out]
            for i, value in zip(at, out):
                payload[i] = np.ascontiguousarray(value, np.float16)
        return {"job": job_of, "position": np.asarray(batch["position"], np.int64), "payload": payload}


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


def _dataset(ray, jobs: list[FeatureJob], actors: int):
    """One dataset of every job's inputs (job, position, text or image row), in blocks small
    enough that every actor gets some."""
    import pyarrow as pa

    total = sum(len(j) for j in jobs)
    block = max(1, min(BLOCK_INPUTS, -(-total // (2 * actors))))
    blocks = []
    for number, job in enumerate(jobs):
        for lo in range(0, len(job), block):
            hi = min(lo + block, len(job))
            texts = job.texts.slice(lo, hi - lo) if job.kind != "grid" else pa.nulls(hi - lo, pa.string())
            rows = np.asarray(job.image_rows[lo:hi], np.int64) if job.kind == "grid" else np.full(hi - lo, -1, np.int64)
            blocks.append(pa.table({"job": pa.array(np.full(hi - lo, number, np.int64)),
                                    "position": pa.array(np.arange(lo, hi, dtype=np.int64)),
                                    "text": texts, "row": pa.array(rows)}))
    return ray.data.from_arrow(blocks)


def run_on_ray(jobs: list[FeatureJob], settings: EncoderSettings, appenders: dict[str, Callable], progress: bool,
               log: Callable[[str], None], where: str, address: Optional[str] = None, workers: Optional[int] = None,
               save_every: int = SAVE_EVERY) -> None:
    """Compute every job on one actor pool, appending each job's rows to its table (``appenders``)."""
    ray = _import_ray()
    workers = workers or 2
    started_here = _connect(ray, address, workers, log)
    try:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = progress
        context.print_on_execution_start = progress
        if not progress:
            logging.getLogger("ray.data").setLevel(logging.WARNING)
        gpus = int(ray.cluster_resources().get("GPU", 0))
        _run_jobs(ray, jobs, settings, appenders, log, where, workers, gpus, save_every)
    finally:
        if started_here:
            ray.shutdown()


def _run_jobs(ray, jobs: list[FeatureJob], settings: EncoderSettings, appenders: dict[str, Callable], log, where: str,
              workers: int, gpus: int, save_every: int) -> None:
    started = time.perf_counter()
    if gpus:  # one GPU per actor, as many actors as GPUs (the batch fills the GPU)
        actors, resources, device = gpus, {"num_gpus": 1}, "cuda"
    else:
        actors, resources, device = workers, {"num_cpus": settings.threads or 1}, "cpu"
    images = next((str(j.images_path) for j in jobs if j.kind == "grid"), None)
    dataset = _dataset(ray, jobs, actors).map_batches(
        EncoderActor, fn_constructor_kwargs={"settings": settings, "jobs": [(j.kind, j.max_tokens) for j in jobs],
                                             "images_path": images, "device": device},
        batch_size=min(settings.batch_size, BLOCK_INPUTS), compute=ray.data.ActorPoolStrategy(size=actors),
        batch_format="numpy", **resources)
    pending: list[list] = [[] for _ in jobs]  # per job: (positions, payloads) not appended yet
    done = [0] * len(jobs)
    for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
        job_of, positions, payload = np.asarray(batch["job"]), np.asarray(batch["position"]), batch["payload"]
        for number in np.unique(job_of).tolist():
            at = np.flatnonzero(job_of == number)
            pending[number].append((positions[at], [payload[i] for i in at]))
            if sum(len(p) for p, _ in pending[number]) >= save_every:
                done[number] += _save(jobs[number], pending[number], appenders[jobs[number].table])
                pending[number] = []
    seconds = time.perf_counter() - started
    for number, job in enumerate(jobs):
        if pending[number]:
            done[number] += _save(job, pending[number], appenders[job.table])
        if done[number] != len(job):
            raise RuntimeError(f"ray gave {done[number]} of the {len(job)} {job.what} asked for")
        log(f"{len(job)} {job.what} encoded in {seconds:.1f}s ({len(job) / max(seconds, 1e-9):.0f}/s) -> {where}/{job.table} "
            f"(ray: {actors} {'GPU' if gpus else 'CPU'} actors, {sum(len(j) for j in jobs)} inputs of {len(jobs)} tables in one pass)")


def _save(job: FeatureJob, pending: list, append: Callable) -> int:
    positions = np.concatenate([p for p, _ in pending])
    rows = [np.asarray(r) for _, part in pending for r in part]
    if job.kind == "pooled":
        rows = np.concatenate(rows)  # [1, H] each
    elif job.kind == "grid":
        rows = np.stack(rows)
    append(job.keys[positions], rows)
    return len(positions)
