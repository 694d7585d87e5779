"""Benchmark: embeddings through the graph on the embedded server (issue: embed + query).

Goals: top-10 similar items among all items of fashion44k, p50 <= 50 ms end to end over
200 queries (item id in, ranked items with titles and categories out, through the graph);
embedding write-back >= 5k items/s; quality: the share of each item's top-10 neighbours in
its own category, against random neighbours and against what a user already has (MiniLM
title vectors, and MiniLM title ‖ EfficientNet image with each block L2-normalised, from the
same feature cache, same items, same search).

    python benchmarks/bench_query.py BUILD --checkpoint RUN_OR_CKPT [--data-dir DIR] \\
        [--json benchmarks/results/query_fashion44k.json]

In this order: embed the build (reused when the build already holds this checkpoint's
embeddings; the report then gives the recorded rate); load the build into the embedded
graph (skipped when loaded); write-back with ``force`` (every item rewritten) at several
worker counts; 200 unconstrained queries with a warm VectorSearch (client strategy), then
50 each with a "same property" constraint (the catalog's most selective common property,
a brand on fashion44k) and a category constraint, and 10 with the all-in-Cypher strategy for
comparison; neighbourhood quality over ``--quality-items`` items (attribute completion:
benchmarks/bench_completion.py). The machine is shared: wall times are noisy.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from machine import describe  # benchmarks/machine.py

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from etl.catalog_build import CatalogBuild  # noqa: E402
from k3m.embedding.embed import EmbedSettings, embed_build  # noqa: E402
from k3m.embedding.writeback import WritebackSettings, write_back  # noqa: E402
from k3m.query import ItemFilter, VectorSearch, similar_items  # noqa: E402
from k3m.query.vector_search import ExactIndex  # noqa: E402

LATENCY_TARGET_MS, WRITEBACK_TARGET = 50.0, 5000.0


def machine() -> dict:
    return describe(("numpy", "torch", "neo4j", "neo4j-rust-ext", "arcadedb-embedded"))


def percentiles(ms: list[float]) -> dict:
    a = np.asarray(ms)
    return {"n": len(a), "p50_ms": round(float(np.percentile(a, 50)), 2), "p95_ms": round(float(np.percentile(a, 95)), 2),
            "mean_ms": round(float(a.mean()), 2), "max_ms": round(float(a.max()), 2)}


def latency(db, search, store, ids: list[str], k: int, item_filter: ItemFilter = ItemFilter()) -> dict:
    ms, hits = [], []
    for item_id in ids:
        started = time.perf_counter()
        result = similar_items(db, item_id, k, item_filter, store, search=search)
        ms.append((time.perf_counter() - started) * 1000)
        hits.append(len(result.hits))
    return {**percentiles(ms), "mean_hits": round(float(np.mean(hits)), 2), "constraint": item_filter.describe(),
            "strategy": search.strategy}


def quality(store, build, n: int, k: int, seed: int, baselines: dict[str, np.ndarray] | None = None) -> dict:
    """Share of top-k neighbours (exact cosine over all items) in the query's category,
    against the share expected of k random other items: (n_c - 1) / (N - 1), and against the
    same search over each of ``baselines`` (name -> one row per build item)."""
    categories = build.items["category"].to_numpy(dtype=object)
    known = np.flatnonzero(build.items["category"].notna().to_numpy())
    rows = np.random.default_rng(seed).choice(known, min(n, len(known)), replace=False)
    index = ExactIndex(store)
    counts = build.items["category"].value_counts()
    same, chance = [], []
    units = {name: _unit(v) for name, v in (baselines or {}).items()}
    base: dict[str, list[float]] = {name: [] for name in units}
    for row in rows.tolist():
        top, _ = index.search(index.matrix[row], k, exclude=row)
        same.append(float(np.mean(categories[top] == categories[row])))
        chance.append((counts[categories[row]] - 1) / (len(build.items) - 1))
        for name, unit in units.items():
            scores = unit @ unit[row]
            scores[row] = -np.inf
            base[name].append(float(np.mean(categories[np.argpartition(-scores, k)[:k]] == categories[row])))
    out = {"items": len(rows), "k": k, "same_category_share": round(float(np.mean(same)), 4),
           "random_share": round(float(np.mean(chance)), 4), "lift": round(float(np.mean(same) / np.mean(chance)), 2)}
    out["baseline_shares"] = {name: round(float(np.mean(v)), 4) for name, v in base.items()}
    return out


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def selective_property(build, min_coverage: float = 0.5) -> str:
    """The constraint of a "same brand" query without naming one: of the properties at least
    ``min_coverage`` of the items hold (all of them when none does), the one with the most
    distinct values."""
    triples = np.asarray(build.triples)
    holders = np.array([len(np.unique(triples[triples[:, 1] == p, 0])) for p in range(len(build.properties))])
    distinct = np.array([len(np.unique(triples[triples[:, 1] == p, 2])) for p in range(len(build.properties))])
    wide = holders >= min_coverage * build.num_items
    pool = np.flatnonzero(wide) if wide.any() else np.arange(len(build.properties))
    return build.properties[int(pool[np.argmax(distinct[pool])])]


def baseline_vectors(build, checkpoint) -> dict[str, np.ndarray]:
    """What a user already has, from the feature cache of the checkpoint's frozen encoders
    (none for trainable ones): MiniLM title vectors, and MiniLM title ‖ EfficientNet image
    (the mean of its grid) with each block L2-normalised first, as a user would (EfficientNet's
    pooled features are ~7x longer than MiniLM's and would otherwise decide the ranking)."""
    from k3m.data import index_for
    from k3m.model.checkpoint import load_checkpoint

    config = load_checkpoint(checkpoint).model.config
    if not config.frozen:
        return {}
    f = index_for(build, config, progress=False).features
    rows = np.arange(build.num_items)
    title = f.title_vectors(rows)
    image = f.image_grid(rows).astype(np.float32).mean(1)
    return {"minilm_title": title, "minilm_title_effnet": np.concatenate([_unit(title), _unit(image)], axis=1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("build", type=Path)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--data-dir", type=Path, help="embedded graph state directory (default $K3M_DATA_DIR or ./data)")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--constrained-queries", type=int, default=50)
    parser.add_argument("--quality-items", type=int, default=5000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 3], help="write-back worker counts to measure")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.data_dir:
        os.environ["K3M_DATA_DIR"] = str(args.data_dir.resolve())
    from kg.graph_db import connect
    from kg.graph_load import load_graph

    report: dict = {"machine": machine(), "build": str(args.build), "targets": {
        "similar_top10_p50_ms": LATENCY_TARGET_MS, "writeback_items_per_s": WRITEBACK_TARGET}}
    build = CatalogBuild.open(args.build)
    store, embed = embed_build(args.checkpoint, build.path, EmbedSettings())
    report["embed"] = {**embed.as_dict(), "recorded_seconds": store.meta["seconds"],
                       "recorded_items_per_s": round(store.meta["items"] / store.meta["seconds"], 1),
                       "recorded_device": store.meta["device"]}
    print(json.dumps(report["embed"]), file=sys.stderr)

    with connect() as db:
        report["server"] = db.capabilities.agent
        load = load_graph(build, db)
        report["graph_load"] = {"items_created": load.items_created, "seconds": round(load.seconds, 1)}
        report["writeback"] = []
        for workers in args.workers:
            wb = write_back(db, store, WritebackSettings(workers=workers, force=True))
            report["writeback"].append({"workers": workers, **wb.as_dict()})
            print(json.dumps(report["writeback"][-1]), file=sys.stderr)

        rng = np.random.default_rng(args.seed)
        ids = store.ids[rng.choice(len(store.ids), args.queries, replace=False)].tolist()
        search = VectorSearch(db, store, "client")
        similar_items(db, ids[0], 10, store=store, search=search)  # warm: norms, float32 view, driver pool
        report["similar_top10_all_items"] = latency(db, search, store, ids, 10)
        print(json.dumps(report["similar_top10_all_items"]), file=sys.stderr)
        few = ids[: args.constrained_queries]
        same = selective_property(build)  # fashion44k: brandName; no name is assumed
        report["similar_top10_same_property"] = {
            **latency(db, search, store, few, 10, ItemFilter(same=(same,))), "property": same}
        categories = dict(zip(build.items["item_id"], build.items["category"]))
        ms = []
        for item_id in few:  # each item's own category: the typical "more like this, same kind" query
            started = time.perf_counter()
            similar_items(db, item_id, 10, ItemFilter(category=categories[item_id]), store, search=search)
            ms.append((time.perf_counter() - started) * 1000)
        report["similar_top10_same_category"] = {**percentiles(ms), "constraint": "the item's own category"}
        in_cypher = VectorSearch(db, None, "cypher")
        report["similar_top10_all_in_cypher"] = latency(db, in_cypher, None, ids[:10], 10)
        print(json.dumps(report["similar_top10_all_in_cypher"]), file=sys.stderr)

    report["quality"] = quality(store, build, args.quality_items, 10, args.seed, baseline_vectors(build, args.checkpoint))
    report["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    best_wb = max(w["items_per_s"] for w in report["writeback"])
    report["summary"] = {
        "similar_top10_p50_ms": report["similar_top10_all_items"]["p50_ms"],
        "similar_top10_p95_ms": report["similar_top10_all_items"]["p95_ms"],
        "similar_p50_meets_target": report["similar_top10_all_items"]["p50_ms"] <= LATENCY_TARGET_MS,
        "writeback_items_per_s_best": best_wb,
        "writeback_meets_target": best_wb >= WRITEBACK_TARGET,
        "same_category_share_top10": report["quality"]["same_category_share"],
        "random_share": report["quality"]["random_share"],
        "baseline_shares_top10": report["quality"]["baseline_shares"],
    }
    text = json.dumps(report, indent=1)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
