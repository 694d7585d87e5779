"""Frozen features for a whole catalog: how long the feature cache takes to fill.

    python benchmarks/bench_features.py --build data/builds/fashion44k [--config configs/pretrain_cpu.yaml]

Computes every feature the config's model reads (MiniLM titles, pairs and strings;
EfficientNet grids) into a fresh, temporary cache directory, with all cores, and writes the
time per table, items/s and the total to ``benchmarks/results/features_<build>.json`` with
the machine described. Target (2-core CPU, fashion44k): <= 15 minutes in all. A second call
for the same build must compute nothing (checked and reported).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
import time
from pathlib import Path

import torch

from machine import describe  # benchmarks/machine.py

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", default="data/builds/fashion44k")
    parser.add_argument("--config", default=str(REPO / "configs" / "pretrain_cpu.yaml"))
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    from encoders.cache import FeatureCache
    from etl.catalog_build import CatalogBuild
    from k3m.data import feature_spec
    from k3m.training import TrainConfig
    from k3m.training.prepare import resolve_feature_resolution, resolve_text_dir

    torch.set_num_threads(args.threads)
    build = CatalogBuild.open(args.build)
    # the resolution pretraining would read (image_size 0: chosen for the build on this machine)
    spec = feature_spec(resolve_feature_resolution(resolve_text_dir(TrainConfig.load(args.config).model), build))
    said: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        cache = FeatureCache(spec, tmp)
        start = time.perf_counter()
        cache.for_build(build, progress=False, log=said.append)
        total = time.perf_counter() - start
        again: list[str] = []
        start = time.perf_counter()
        cache.for_build(build, progress=False, log=again.append)
        reread = time.perf_counter() - start
    tables = {}
    for line in said:  # "<n> <what> encoded in <s>s (<rate>/s) -> ..."
        m = re.match(r"(\d+) (\w+) encoded in ([\d.]+)s", line)
        if m:
            tables[m[2]] = {"items": int(m[1]), "seconds": float(m[3]), "items_per_s": int(m[1]) / max(float(m[3]), 1e-9)}
    info = describe(("torch", "transformers", "timm"))
    info |= {"cores_available": len(os.sched_getaffinity(0)), "torch_threads": args.threads,
             "load_average_at_end": [round(x, 2) for x in os.getloadavg()]}
    result = {"benchmark": "features", "build": str(args.build), "items": build.num_items, "spec": spec.__dict__,
              "tables": tables, "total_seconds": total, "target_seconds": 15 * 60, "met": total <= 15 * 60,
              "second_call_seconds": reread, "second_call_computed": again, "machine": info}
    out = Path(args.out or REPO / "benchmarks" / "results" / f"features_{Path(args.build).name}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(json.dumps({k: result[k] for k in ("tables", "total_seconds", "met", "second_call_seconds")}, indent=2))


if __name__ == "__main__":
    main()
