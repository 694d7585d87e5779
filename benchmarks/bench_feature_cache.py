"""The feature cache's own cost on a build whose features are cached: keys, lookups, checks.

    python benchmarks/bench_feature_cache.py --build data/builds/fashion44k [--root data/features]
    python benchmarks/bench_feature_cache.py --build data/builds/fashion44k --replicate 23 --work /tmp/b1m

Each ``for_build`` runs in a fresh process (its peak RSS is its own), once per ``verify``
mode: ``full`` (every data digest read), ``lazy`` (sizes and key digests only) and ``auto``.
``--replicate K`` first writes a synthetic build of K copies of the build's rows (new ids
``ID~k``, the same titles, attributes and image files: ``image_digest`` and pixels repeat),
so the cache is hit and only the bookkeeping grows with the catalog. The build's features
must be in the cache already (``k3m pretrain --features``); a run that computes anything is
reported as such. Results: ``benchmarks/results/feature_cache_<build>.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from machine import describe  # benchmarks/machine.py

REPO = Path(__file__).resolve().parents[1]
CHILD = """
import json, resource, sys, time
from encoders.cache import FeatureCache, FeatureSpec
from etl.catalog_build import CatalogBuild
build, root, verify, image_size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
said = []
started = time.perf_counter()
view = FeatureCache(FeatureSpec(image_size=image_size), root).for_build(CatalogBuild.open(build), progress=False,
                                                                        log=said.append, verify=verify)
seconds = time.perf_counter() - started
print(json.dumps({"verify": verify, "seconds": round(seconds, 2), "items": len(view.title_rows),
                  "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024), "log": said}))
"""


def replicate(build_dir: Path, copies: int, out: Path) -> Path:
    """A build of ``copies`` copies of ``build_dir``'s items (new ids, same content)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    items = pq.read_table(build_dir / "items.parquet")
    n = items.num_rows
    parts = []
    for k in range(copies):
        ids = pc.binary_join_element_wise(items.column("item_id"), pa.scalar(f"~{k}"), "") if k else items.column("item_id")
        parts.append(items.set_column(items.schema.get_field_index("item_id"), "item_id", ids))
    pq.write_table(pa.concat_tables(parts), out / "items.parquet")
    triples = np.load(build_dir / "triples.npy")
    np.save(out / "triples.npy", np.concatenate([triples + np.array([k * n, 0, 0], np.int32) for k in range(copies)]))
    np.save(out / "triple_split.npy", np.tile(np.load(build_dir / "triple_split.npy"), copies))
    images = np.load(build_dir / "images.npy", mmap_mode="r")
    with open(out / "images.npy", "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": np.lib.format.dtype_to_descr(images.dtype),
                                                 "fortran_order": False, "shape": (n * copies, *images.shape[1:])})
        for _ in range(copies):
            for lo in range(0, n, 8192):
                f.write(np.ascontiguousarray(images[lo:lo + 8192]).tobytes())
    for name in ("properties.json", "values.json", "categories.json", "summary.json", "rejects.jsonl"):
        shutil.copy(build_dir / name, out / name)
    manifest = json.loads((build_dir / "manifest.json").read_text())
    manifest["counts"] = {**manifest["counts"], "items": n * copies, "triples": int(len(triples) * copies)}
    manifest["replicated"] = {"from": str(build_dir), "copies": copies}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return out


def lookup_scaling(n: int = 1_000_000) -> dict:
    """rows_of over a table of ``n`` random keys, asked for all of them (shuffled)."""
    import tempfile

    from encoders.feature_table import Table

    rng = np.random.default_rng(0)
    keys = rng.integers(0, 256, (n, 16), dtype=np.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        table = Table(Path(tmp) / "t")
        table.append(keys, np.zeros((n, 1), np.float16))
        query = keys[rng.permutation(n)]
        started = time.perf_counter()
        rows = Table(Path(tmp) / "t").rows_of(query)
        seconds = time.perf_counter() - started
        assert np.array_equal(keys[rows], query)
    return {"keys": n, "rows_of_seconds": round(seconds, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", default="data/builds/fashion44k")
    parser.add_argument("--root", default=os.environ.get("K3M_FEATURES_DIR"), help="the feature cache root")
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--replicate", type=int, default=0, metavar="K")
    parser.add_argument("--work", default=None, help="where --replicate writes its build")
    parser.add_argument("--modes", default="full,lazy,auto")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    build = Path(args.build)
    made = None
    if args.replicate:
        started = time.perf_counter()
        build = replicate(build, args.replicate, Path(args.work or "/tmp/k3m-replicated") / f"{build.name}x{args.replicate}")
        made = round(time.perf_counter() - started, 1)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    runs = []
    for verify in args.modes.split(","):
        done = subprocess.run([sys.executable, "-c", CHILD, str(build), args.root or "", verify, str(args.image_size)],
                              capture_output=True, text=True, env=env, check=True)
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(runs[-1]), flush=True)
    result = {"benchmark": "feature_cache", "build": str(build), "replicated_in_s": made, "for_build": runs,
              "lookup": lookup_scaling(), "machine": describe(("numpy",)) | {"load_average_at_end": os.getloadavg()}}
    out = Path(args.out or REPO / "benchmarks" / "results" / f"feature_cache_{build.name}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(json.dumps(result["lookup"]))


if __name__ == "__main__":
    main()
