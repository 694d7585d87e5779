"""``k3m embed --engine ray``: the items' vectors computed by Ray Data, written into the same store.

:func:`k3m.embedding.embed.embed_build` works out what to compute exactly as it does for one
process (the run, the rows whose input changed, the rows carried over) and hands the rows to
compute here. They become a dataset of build rows, mapped with ``map_batches`` over an actor
pool of :class:`EmbedActor` (each loads the checkpoint once and runs the same
:class:`~k3m.embedding.encoder.ItemEncoder` as the local engine; one GPU per actor when the
cluster has GPUs, bf16 autocast there). The build's index (pairs, titles, the feature cache
rows) is made once by the driver and shared through Ray's object store, so the actors neither
recompute it nor wait on the feature cache's lock. The driver streams the results back
(``iter_batches``) and writes them into the store writer as they come (rows in any order),
so the store's format, its checks and its nearest-neighbour index are those of the local
engine, and memory in the driver is a batch of results.

Where: ``address`` (``ray start --head`` prints it; ``auto`` for the cluster this node belongs
to), else ``$RAY_ADDRESS``, else a Ray started here with ``workers`` actors. On a cluster
every node needs the project installed, and the checkpoint, the build and the feature cache
readable at the same paths (a shared filesystem). Ray is imported only here.
"""
from __future__ import annotations

import sys
import time
from typing import Optional

import numpy as np

from encoders.ray_features import _connect, _import_ray

BLOCK_ROWS = 1024  # build rows per dataset block


class EmbedActor:
    """One actor of the pool: the checkpoint's model in eval mode over the driver's index."""

    def __init__(self, checkpoint: str, index, batch_size: int, device: str, threads: int):
        import torch

        from k3m.embedding.encoder import ItemEncoder
        from k3m.model.run import ResolvedRun

        import ray

        if isinstance(index, ray.ObjectRef):  # the driver's index, from the object store
            index = ray.get(index)
        if device == "cpu":
            torch.set_num_threads(threads)
        run = ResolvedRun.resolve(checkpoint)
        model = run.load_model().to(device).eval()
        self.device = device
        self.encoder = ItemEncoder(model, run.tokenizer, index, batch_size=batch_size)

    def __call__(self, batch: dict) -> dict:
        from contextlib import nullcontext

        import torch

        rows = np.asarray(batch["row"], np.int64)
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if self.device.startswith("cuda") else nullcontext()
        with torch.inference_mode(), autocast:
            vectors, reprs = self.encoder.encode_both(rows)
        return {"row": rows, "vector": vectors.numpy(), "repr": reprs.numpy()}


def embed_on_ray(run, index, settings, todo: np.ndarray, writer, kept: bool, progress=None,
                 address: Optional[str] = None, workers: Optional[int] = None, log=None) -> None:
    """Compute the vectors of build rows ``todo`` on Ray Data and write them into ``writer``
    (a :class:`~k3m.embedding.store.StoreWriter`)."""
    if not len(todo):
        return
    log = log or (lambda message: print(f"[k3m embed] {message}", file=sys.stderr, flush=True))
    ray = _import_ray()
    workers = workers or 2
    started_here = _connect(ray, address, workers, log)
    try:
        import pyarrow as pa

        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        context.print_on_execution_start = False
        gpus = int(ray.cluster_resources().get("GPU", 0))
        if gpus:  # one GPU per actor, as many actors as GPUs
            actors, resources, device = gpus, {"num_gpus": 1}, "cuda"
        else:
            actors, resources, device = workers, {"num_cpus": 1}, "cpu"
        started = time.perf_counter()
        shared = ray.put(index)
        block = max(1, min(BLOCK_ROWS, -(-len(todo) // (2 * actors))))
        blocks = [pa.table({"row": pa.array(todo[lo:lo + block])}) for lo in range(0, len(todo), block)]
        dataset = ray.data.from_arrow(blocks).map_batches(
            EmbedActor, fn_constructor_kwargs={"checkpoint": str(run.path), "index": shared,
                                               "batch_size": settings.batch_size, "device": device, "threads": 1},
            batch_size=settings.batch_size, compute=ray.data.ActorPoolStrategy(size=actors), batch_format="numpy",
            **resources)
        done = 0
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            rows = np.asarray(batch["row"], np.int64)
            writer.write(rows, np.asarray(batch["vector"], np.float32), np.asarray(batch["repr"], np.float32) if kept else None)
            done += len(rows)
            if progress:
                progress(done, len(todo))
        if done != len(todo):
            raise RuntimeError(f"ray gave {done} of the {len(todo)} items asked for")
        seconds = time.perf_counter() - started
        log(f"{done} items embedded in {seconds:.1f}s ({done / max(seconds, 1e-9):.0f}/s; ray: {actors} "
            f"{'GPU' if gpus else 'CPU'} actors)")
    finally:
        if started_here:
            ray.shutdown()
