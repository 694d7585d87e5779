"""Benchmark: the full fashion44k import against its floor, measured in the same run.

Targets (issue 7): the catalog build in <= 60 s and <= 3x the floor, where the floor is the
time it takes merely to read every record (gunzip + JSON) and decode every image (zip read +
JPEG decode to an RGB array), sequentially in one process. Peak memory is reported.

Every measurement runs in a fresh Python process so imports and peak RSS are its own. The
machine is shared, so wall times are noisy: CPU seconds (user + sys, workers included) are
reported beside them, and the ratio is taken within one run.

    python benchmarks/bench_import.py [--datasets DIR] [--json benchmarks/results/import_fashion44k.json]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from machine import describe  # benchmarks/machine.py

REPO = Path(__file__).resolve().parents[1]
EXPECTED = {"items": 44441, "triples": 561280, "properties": 201, "images_ok": 44072, "images_missing": 369, "rejected_rows": 0}
TARGET_SECONDS, TARGET_RATIO = 60.0, 3.0

# Each probe prints one JSON line: its wall seconds, CPU seconds and peak RSS (self, largest child).
_MEASURE = """
import json, resource, sys, time
def report(extra, started, cpu0):
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime - cpu0
    print(json.dumps({"wall_s": round(time.perf_counter() - started, 3), "cpu_s": round(cpu, 3),
                      "peak_rss_mb": round(me.ru_maxrss / 1024, 1), "peak_child_rss_mb": round(kids.ru_maxrss / 1024, 1), **extra}))
"""

FLOOR = _MEASURE + """
import gzip, io, zipfile
import numpy as np
from PIL import Image
cpu0 = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
started = time.perf_counter()
records = 0
with gzip.open(sys.argv[1] + "/styles.jsonl.gz", "rb") as f:
    for line in f:
        json.loads(line)
        records += 1
records_s = time.perf_counter() - started
decoded = 0
with zipfile.ZipFile(sys.argv[1] + "/images.zip") as z:
    for info in z.infolist():
        if not info.is_dir():
            with Image.open(io.BytesIO(z.read(info))) as image:
                np.asarray(image.convert("RGB"))
            decoded += 1
report({"records": records, "images": decoded, "records_s": round(records_s, 3)}, started, cpu0)
"""

IMPORT = _MEASURE + """
from pathlib import Path
cpu0 = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
started = time.perf_counter()
from etl.build import import_catalog
limit = int(sys.argv[4]) if sys.argv[4] != "all" else None
summary = import_catalog([Path(sys.argv[1]) / "styles.jsonl.gz"], "fashion44k", sys.argv[2], workers=int(sys.argv[3]), limit=limit)
report({"summary": summary}, started, cpu0)
"""


def probe(script: str, *args: str) -> dict:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script), *args], capture_output=True, text=True, cwd=REPO)
    if done.returncode != 0:
        raise RuntimeError(f"benchmark probe failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def machine() -> dict:
    return describe(("torch", "numpy", "pyarrow", "Pillow"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", type=Path, default=Path(os.environ.get("K3M_DATASETS", REPO.parent / "shared" / "datasets")))
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "import_fashion44k.json")
    args = parser.parse_args(argv)
    data = str(args.datasets / "fashion44k")

    result = {"benchmark": "full fashion44k import (k3m import --mapping fashion44k)", "machine": machine()}
    with tempfile.TemporaryDirectory(prefix="bench_import_") as work:
        floor_before = probe(FLOOR, data)
        runs = {f"workers_{w}": probe(IMPORT, data, f"{work}/w{w}", str(w), "all") for w in (2, 0)}
        quarter = probe(IMPORT, data, f"{work}/quarter", "2", "11110")
        floor_after = probe(FLOOR, data)

    floor = min(floor_before, floor_after, key=lambda r: r["wall_s"])
    best = min(runs.values(), key=lambda r: r["wall_s"])
    default = runs["workers_2"]
    s = default["summary"]
    counts = {"items": s["items"], "triples": s["triples"], "properties": s["properties"],
              "images_ok": s["images"]["ok"], "images_missing": s["images"]["missing"], "rejected_rows": s["rejected_rows"]}
    result.update({
        "floor": {"before": floor_before, "after": floor_after, "used": floor["wall_s"],
                  "what": "gunzip+json.loads every record, then zip read + JPEG decode to RGB array of every image; one process"},
        "import": {name: {k: v for k, v in run.items() if k != "summary"} | {"summary_seconds": run["summary"]["seconds"]}
                   for name, run in runs.items()},
        "memory_scaling": {
            "items_11110": {"peak_rss_mb": quarter["peak_rss_mb"], "peak_child_rss_mb": quarter["peak_child_rss_mb"]},
            "items_44441": {"peak_rss_mb": default["peak_rss_mb"], "peak_child_rss_mb": default["peak_child_rss_mb"]},
            "note": "main-process peak RSS at a quarter and the whole catalog; workers' peak is per worker",
        },
        "counts": counts,
        "counts_as_expected": counts == EXPECTED,
        "default_workers_2": {
            "wall_s": default["wall_s"],
            "ratio_to_floor": round(default["wall_s"] / floor["wall_s"], 2),
            "cpu_ratio_to_floor_cpu": round(default["cpu_s"] / floor["cpu_s"], 2),
        },
        "targets": {
            "seconds": TARGET_SECONDS,
            "ratio": TARGET_RATIO,
            "met_seconds": best["wall_s"] <= TARGET_SECONDS and default["wall_s"] <= TARGET_SECONDS,
            "met_ratio": default["wall_s"] <= TARGET_RATIO * floor["wall_s"],
        },
    })
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("counts_as_expected", "default_workers_2", "targets", "memory_scaling")}, indent=2))
    print(f"wrote {args.json}")
    return 0 if result["counts_as_expected"] else 1


if __name__ == "__main__":
    sys.exit(main())
