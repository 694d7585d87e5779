"""Benchmark: a 1% change of fashion44k synced end to end against a full import + load + embed.

Target (issue 12): the sync (``k3m sync``: import --update, RDF and graph diff, features and
embeddings of the new and changed items, write-back) takes <= 5% of the full path's time
(import, RDF load, graph load, features from an empty cache, embed, write-back), both
measured here in one run on one embedded graph server.

The change (seeded): of the catalog's items, 0.33% are added (held back from the previous
version), 0.33% removed, and 0.33% edited (a third of them their title, a third their
photo (another product's image under the same id), a third an attribute value). The full
path is the previous version's (0.33% fewer items than the new one, the same otherwise).

    python benchmarks/bench_sync.py --checkpoint runs/cpu [--datasets DIR] [--work DIR]
        [--json benchmarks/results/sync_fashion44k.json]

The checkpoint is any K3M checkpoint (the demo's or ``python -m k3m.pretrain --config
configs/pretrain_cpu.yaml``'s); with frozen encoders the full path computes every feature.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from machine import describe  # benchmarks/machine.py

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
TARGET_RATIO = 0.05


def make_catalogs(fashion: Path, work: Path, change: float, seed: int) -> dict:
    """old.jsonl.gz / new.jsonl.gz and new.zip (old.zip = the dataset's) in ``work``."""
    with gzip.open(fashion / "styles.jsonl.gz", "rt", encoding="utf-8") as stream:
        rows = [json.loads(line) for line in stream]
    rng = random.Random(seed)
    third = max(1, round(change * len(rows) / 3))
    picked = rng.sample(range(len(rows)), 3 * third)
    added, removed, edited = set(picked[:third]), set(picked[third:2 * third]), picked[2 * third:]
    titled, pictured, attributed = edited[0::3], edited[1::3], edited[2::3]
    new_rows = {i: json.loads(json.dumps(rows[i])) for i in edited}
    for i in titled:
        new_rows[i]["productDisplayName"] = f"{rows[i].get('productDisplayName') or ''} (new season)"
    for i in attributed:
        new_rows[i]["baseColour"] = "Teal" if rows[i].get("baseColour") != "Teal" else "Olive"
    with gzip.open(work / "old.jsonl.gz", "wt", encoding="utf-8") as old, gzip.open(work / "new.jsonl.gz", "wt", encoding="utf-8") as new:
        for i, row in enumerate(rows):
            if i not in added:
                old.write(json.dumps(row) + "\n")
            if i not in removed:
                new.write(json.dumps(new_rows.get(i, row)) + "\n")
    swap = {f"images/{rows[i]['id']}.jpg": f"images/{rows[(i + 1000) % len(rows)]['id']}.jpg" for i in pictured}
    with zipfile.ZipFile(fashion / "images.zip") as source, zipfile.ZipFile(work / "new.zip", "w") as out:
        present = set(source.namelist())
        for info in source.infolist():
            other = swap.get(info.filename)
            data = source.read(other if other in present else info.filename)
            entry = zipfile.ZipInfo(info.filename, info.date_time)  # writestr updates what it is given
            entry.compress_type = info.compress_type
            out.writestr(entry, data)
    return {"items": len(rows), "added": third, "removed": third, "edited": len(edited), "titles": len(titled),
            "images": len(pictured), "attributes": len(attributed)}


def timed(stage, into: dict, name: str):
    started = time.perf_counter()
    out = stage()
    into[name] = round(time.perf_counter() - started, 3)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, type=Path)
    parser.add_argument("--datasets", type=Path, default=Path(os.environ.get("K3M_DATASETS", REPO.parent / "shared" / "datasets")))
    parser.add_argument("--work", type=Path, default=None, help="scratch directory (default: a temporary one)")
    parser.add_argument("--change", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "sync_fashion44k.json")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-sync-"))
    work.mkdir(parents=True, exist_ok=True)
    # every state the two paths write lives here: the features start empty
    os.environ["K3M_DATA_DIR"] = str(work / "data")
    os.environ["K3M_FEATURES_DIR"] = str(work / "features")
    shutil.rmtree(work / "data", ignore_errors=True)
    shutil.rmtree(work / "features", ignore_errors=True)

    from etl.build import import_catalog
    from etl.catalog_build import CatalogBuild
    from kg import embedded_server
    from kg.embedded_server import ServerSettings
    from kg.graph_db import connect
    from kg.graph_load import load_graph
    from kg.rdf_store import load_rdf
    from k3m.embedding.embed import embed_build
    from k3m.embedding.store import EmbeddingStore
    from k3m.embedding.writeback import write_back
    from k3m.sync import sync_catalog

    info = describe(("torch", "pyoxigraph", "neo4j", "arcadedb-embedded"))
    fashion = args.datasets / "fashion44k"
    change = make_catalogs(fashion, work, args.change, args.seed)
    server = embedded_server.start(settings=ServerSettings(data_dir=work / "data"))
    build = work / "build"
    shutil.rmtree(build, ignore_errors=True)
    try:
        full: dict = {}
        started = time.perf_counter()
        timed(lambda: import_catalog([work / "old.jsonl.gz"], "fashion44k", build, images=str(fashion / "images.zip")), full, "import")
        opened = CatalogBuild.open(build)
        timed(lambda: load_rdf(opened), full, "rdf")
        with connect(database="bench") as db:
            timed(lambda: load_graph(opened, db), full, "graph")
            store = timed(lambda: embed_build(args.checkpoint, build)[0], full, "embed")
            timed(lambda: write_back(db, store), full, "write_back")
        full["total"] = round(time.perf_counter() - started, 3)
        print(f"full: {full}", file=sys.stderr)

        started = time.perf_counter()
        report = sync_catalog([work / "new.jsonl.gz"], "fashion44k", build, images=str(work / "new.zip"))
        sync_total = round(time.perf_counter() - started, 3)
        stages = {"import": report["import"]["seconds"], "rdf": report["rdf"]["seconds"], "graph": report["graph"]["seconds"],
                  "embed_and_write_back": round(sum(e["seconds"] for e in report["embed"]), 3), "total": sync_total}
        print(f"sync: {stages}", file=sys.stderr)
        current = EmbeddingStore.open(build)  # served again: up to date with the new build
        embedded = report["embed"][0]
        result = {
            "benchmark": "sync of a 1% catalog change (k3m sync) vs full import + load + embed",
            "catalog": "fashion44k", "change": change, "checkpoint": str(args.checkpoint),
            "full": full, "sync": stages,
            "sync_counts": {**{k: report["import"]["update"][k] for k in ("added", "changed", "removed", "unchanged")},
                            "embeddings_computed": embedded["computed"], "written_to_graph": embedded["graph"]["written"],
                            "store_items": int(len(current.ids)), "rdf_mode": report["rdf"].get("mode"),
                            "graph": {k: v for k, v in report["graph"].items() if isinstance(v, (int, float, str))}},
            "ratio": round(sync_total / full["total"], 4),
            "target_ratio": TARGET_RATIO,
            "target_met": sync_total <= TARGET_RATIO * full["total"],
            "machine": {**info, "load_average_at_end": [round(x, 2) for x in os.getloadavg()]},
        }
    finally:
        server.stop()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: result[k] for k in ("full", "sync", "ratio", "target_met")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
