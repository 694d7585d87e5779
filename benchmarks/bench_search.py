"""Benchmark: similar items at catalog scale, the FAISS index against exact search, in process
and through the query service over HTTP (issue 17, parts 2 and 3).

Goals at 1M items: top-10 p50 <= 5 ms in the service (<= 20 ms with a graph constraint),
recall@10 >= 0.95 against exact search.

    python benchmarks/bench_search.py BASE_BUILD --copies 23 --work /tmp/bench-search \\
        [--noise 0.3] [--queries 500] [--json benchmarks/results/search_1m.json]

BASE_BUILD is a real catalog build with real embeddings (`k3m import` + `k3m embed` of
fashion44k). The large catalog is made from it, and the JSON says so plainly:

* items: the base catalog's records repeated ``copies`` times, copy 0 with the real ids and
  copy k with ``ID~k``, the same titles, properties and categories, imported by `k3m
  import` (images left out, so no item has one); the graph is either this catalog loaded
  by `k3m kg load` or, with ``--graph-database``, a database holding the base build (its
  constraints then return copy 0's items: candidate lists the size of the base catalog's,
  searched for in the large index);
* vectors: copy k of an item is the item's real vector plus Gaussian noise whose norm is
  ``noise`` times the median distance of the real items to their 10th nearest neighbour,
  so a copy's neighbours mix its siblings with other items' copies (not near-duplicates
  that any index finds); written with the store writer (``write_store``).

Stages, each cached in ``--work`` (a rerun picks up where one stopped): the catalog, the
store, the graph; then each index kind is built and timed in memory, the default one saved
beside the store; recall@10 and latency in process (index search alone, and
``VectorSearch.similar`` with graph constraints through Bolt); then `k3m serve-api` in its
own process, timed by a keep-alive HTTP client, without and with a constraint.
"""
from __future__ import annotations

import argparse
import gzip
import http.client
import json
import os
import re
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

from machine import describe  # benchmarks/machine.py

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from etl.catalog_build import CatalogBuild  # noqa: E402
from k3m.embedding.ann_index import AnnSettings, build_index, save_index, store_version  # noqa: E402
from k3m.embedding.store import EmbeddingStore, write_store  # noqa: E402
from k3m.query.patterns import ItemFilter  # noqa: E402
from k3m.query.vector_search import ExactIndex, VectorSearch  # noqa: E402

TARGETS = {"service_p50_ms": 5.0, "service_constrained_p50_ms": 20.0, "recall_at_10": 0.95}
MODEL_ID = "synthetic-replicas"


def percentiles(ms) -> dict:
    a = np.asarray(ms, dtype=float)
    return {"n": int(len(a)), "p50_ms": round(float(np.percentile(a, 50)), 3),
            "p99_ms": round(float(np.percentile(a, 99)), 3), "mean_ms": round(float(a.mean()), 3)}


def log(what, value) -> None:
    print(f"[bench_search] {what}: {json.dumps(value)}", file=sys.stderr, flush=True)


# -- the catalog --------------------------------------------------------------------------
def replicated_catalog(base: CatalogBuild, copies: int, work: Path) -> Path:
    """The base build's source records, ``copies`` times with new ids, imported (cached)."""
    out = work / f"catalog-x{copies}"
    if (out / "manifest.json").is_file():
        return out
    from etl.build import import_catalog

    manifest = base.manifest
    source = Path(manifest["sources"][0]["path"]) if "sources" in manifest else None
    if source is None or not source.is_file():
        raise SystemExit(f"cannot find the base build's source file in {base.path}/manifest.json")
    replicas = work / f"catalog-x{copies}.jsonl.gz"
    with gzip.open(source, "rt", encoding="utf-8") as stream:
        records = [json.loads(line) for line in stream if line.strip()]
    with gzip.open(replicas, "wt", encoding="utf-8", compresslevel=1) as sink:
        for k in range(copies):
            for record in records:
                # copy 0 keeps the real ids: a graph of the base build answers constraints for it
                sink.write(json.dumps(record if k == 0 else {**record, "id": f"{record['id']}~{k}"}) + "\n")
    empty = work / "no-images"
    empty.mkdir(exist_ok=True)
    started = time.perf_counter()
    import_catalog([replicas], "fashion44k", out, images=str(empty), workers=0)
    log("import", {"items": len(records) * copies, "seconds": round(time.perf_counter() - started, 1)})
    return out


def noise_scale(base_store: EmbeddingStore, sample: int = 500, seed: int = 0) -> float:
    """Median distance of real items to their 10th nearest neighbour (exact, a sample)."""
    m = np.asarray(base_store.matrix, dtype=np.float32)
    rows = np.random.default_rng(seed).choice(len(m), min(sample, len(m)), replace=False)
    d = []
    sq = np.einsum("ij,ij->i", m, m)
    for r in rows:
        dist = np.sqrt(np.maximum(sq + sq[r] - 2 * m @ m[r], 0))
        dist[r] = np.inf
        d.append(np.partition(dist, 9)[9])
    return float(np.median(d))


def synthetic_store(base_store: EmbeddingStore, build: CatalogBuild, noise: float, seed: int = 0) -> EmbeddingStore:
    """Each item's vector: its base item's real vector plus noise (cached; no index yet)."""
    try:
        return EmbeddingStore.open(build.path, MODEL_ID)
    except Exception:  # noqa: BLE001 - not made yet
        pass
    started = time.perf_counter()
    ids = build.items["item_id"].to_numpy(dtype=object)
    base_rows = base_store.rows([i.rsplit("~", 1)[0] for i in ids.tolist()])
    scale = noise_scale(base_store) * noise
    rng = np.random.default_rng(seed)
    m = np.asarray(base_store.matrix, dtype=np.float32)
    vectors = np.empty((len(ids), m.shape[1]), np.float32)
    for a in range(0, len(ids), 65536):
        part = base_rows[a:a + 65536]
        eps = rng.standard_normal((len(part), m.shape[1])).astype(np.float32)
        vectors[a:a + 65536] = m[part] + eps * (scale / np.sqrt(m.shape[1]))
    from etl.sync import manifest_sha256

    meta = {"created": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()), "facts": "train",
            "lpm_norm": base_store.meta.get("lpm_norm", 2), "build_manifest_sha256": manifest_sha256(build.path),
            "checkpoint": base_store.meta.get("checkpoint"), "synthetic": {
                "from": str(base_store.path), "noise_relative_to_10nn_distance": noise, "noise_norm": scale, "seed": seed}}
    store = write_store(build.path, MODEL_ID, ids, vectors, base_store.property_vectors, base_store.value_vectors,
                        meta, index_settings=AnnSettings(kind="exact"))
    log("store", {"rows": len(ids), "noise_norm": round(scale, 4), "seconds": round(time.perf_counter() - started, 1)})
    return store


def loaded_graph(build: CatalogBuild, database: str):
    from kg.graph_db import connect
    from kg.graph_load import load_graph

    db = connect(database=database)
    started = time.perf_counter()
    report = load_graph(build, db)
    log("graph", {"mode": report.mode, "items_created": report.items_created, "seconds": round(time.perf_counter() - started, 1)})
    return db, {"mode": report.mode, "seconds": round(report.seconds, 1), "triples_per_s": round(report.triples_per_s)}


# -- in process ----------------------------------------------------------------------------
def exact_truth(exact: ExactIndex, rows, k: int, candidates=None) -> list[np.ndarray]:
    return [exact.search(exact.matrix[r], k, None if candidates is None else candidates(r), exclude=r)[0] for r in rows]


def recall(found: list[np.ndarray], truth: list[np.ndarray]) -> float:
    return float(np.mean([len(set(f.tolist()) & set(t.tolist())) / max(1, len(t)) for f, t in zip(found, truth)]))


def measure_index(ann, exact, rows, truth, k, candidates=None, truth_constrained=None) -> dict:
    out = {}
    for name, cand, want in (("unconstrained", None, truth), ("category", candidates, truth_constrained)):
        if want is None:
            continue
        ms, found = [], []
        for r in rows:
            rs = None if cand is None else cand(r)
            started = time.perf_counter()
            top, _ = ann.search(exact.matrix[r], k, rs, exclude=r)
            ms.append((time.perf_counter() - started) * 1000)
            found.append(top)
        out[name] = {**percentiles(ms), "recall_at_10": round(recall(found, want), 4)}
    return out


def in_process(store, build, db, kinds, rows, k, args, graph_rows) -> dict:
    exact = ExactIndex(store)
    _ = exact.inv_norms
    categories = build.items["category"].to_numpy(dtype=object)
    by_category = {c: np.flatnonzero(categories == c) for c in set(categories[rows].tolist())}

    def same_category(r):
        return by_category[categories[r]]

    out: dict = {"queries": len(rows)}
    ms = []
    truth = []
    for r in rows:
        started = time.perf_counter()
        truth.append(exact.search(exact.matrix[r], k, exclude=r)[0])
        ms.append((time.perf_counter() - started) * 1000)
    out["exact_numpy"] = {"unconstrained": percentiles(ms)}
    ms, truth_cat = [], []
    for r in rows:
        started = time.perf_counter()
        truth_cat.append(exact.search(exact.matrix[r], k, same_category(r), exclude=r)[0])
        ms.append((time.perf_counter() - started) * 1000)
    out["exact_numpy"]["category"] = {**percentiles(ms), "mean_candidates": round(float(np.mean(
        [len(same_category(r)) for r in rows])))}
    log("exact", out["exact_numpy"])
    indexes = {}
    for kind in kinds:
        settings = AnnSettings(kind=kind)
        started = time.perf_counter()
        ann = build_index(store.matrix, store_version(store.meta), settings)
        built = time.perf_counter() - started
        indexes[kind] = ann
        out[kind] = {"build_seconds": round(built, 1), "params": ann.meta["params"],
                     **measure_index(ann, exact, rows, truth, k, same_category, truth_cat)}
        for widen in (2, 4):  # recall against time: a wider search per query
            wider = type(ann)(ann.index, ann.label_row, ann.meta, AnnSettings(
                kind=kind, hnsw_ef_search=settings.hnsw_ef_search * widen, ivf_nprobe=settings.ivf_nprobe * widen))
            out[kind][f"search_x{widen}"] = measure_index(wider, exact, rows[:200], truth[:200], k)["unconstrained"]
        log(kind, out[kind])
    # through the graph: VectorSearch.similar, the constraint's candidates collected over Bolt
    if db is not None:
        chosen = AnnSettings().kind_for(len(store.ids))
        ann = indexes.get(chosen) or next(iter(indexes.values()))
        ids = store.ids
        brand = "brandName" if "brandName" in build.properties else None
        for strategy, search in (("ann", VectorSearch(db, store, "ann", ann=ann)), ("client", VectorSearch(db, store, "client"))):
            part = {}
            filters = [("unconstrained", lambda r: ItemFilter()),
                       ("category", lambda r: ItemFilter(category=categories[r]))]
            if brand:
                filters.append(("same_brand", lambda r: ItemFilter(same=(brand,))))
            for name, make in filters:
                ms = []
                for r in graph_rows[: args.graph_queries]:
                    started = time.perf_counter()
                    search.similar(str(ids[r]), k, make(r))
                    ms.append((time.perf_counter() - started) * 1000)
                part[name] = percentiles(ms)
            out[f"vector_search_{strategy}_through_graph"] = part
            log(f"vector_search_{strategy}", part)
        out["index_in_service"] = ann.kind
        save_index(ann, store.path)
    return out


# -- the service ---------------------------------------------------------------------------
def service(build_path: Path, database: str, store, build, rows, k, args, strategy: str, truth=None,
            graph_rows=None) -> dict:
    env = {**os.environ}
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "k3m", "serve-api", str(build_path), "--port", "0",
                                "--database", database, "--model", MODEL_ID, "--strategy", strategy],
                               env=env, stderr=subprocess.PIPE, text=True)
    try:
        line = ""
        while "http://" not in line:
            line = process.stderr.readline()
            if process.poll() is not None:
                raise SystemExit(f"serve-api ended: {line}{process.stderr.read()}")
        ready = time.perf_counter() - started
        host, port = re.search(r"http://([^:/]+):(\d+)", line).groups()
        connection = http.client.HTTPConnection(host, int(port), timeout=60)
        categories = build.items["category"].to_numpy(dtype=object)
        ids = store.ids

        def timed(paths):
            ms, bodies = [], []
            for path in paths:
                t = time.perf_counter()
                connection.request("GET", path)
                response = connection.getresponse()
                body = response.read()
                ms.append((time.perf_counter() - t) * 1000)
                assert response.status == 200, (path, body[:200])
                bodies.append(json.loads(body))
            return ms, bodies

        def path(r, **query):
            return f"/items/{urllib.parse.quote(str(ids[r]))}/similar?" + urllib.parse.urlencode({"k": k, **query})

        timed([path(r) for r in rows[:20]])  # warm the connection and the pages of the matrix
        out = {"strategy": strategy, "seconds_to_ready": round(ready, 1)}
        ms, bodies = timed([path(r) for r in rows])
        out["unconstrained"] = percentiles(ms)
        # the service's own time for the answer (its "milliseconds"): the rest is HTTP and FastAPI
        out["unconstrained"]["server_p50_ms"] = round(float(np.percentile([b["milliseconds"] for b in bodies], 50)), 3)
        if truth is not None:
            row_of = store.row_of
            found = [np.array([row_of[h["id"]] for h in b["hits"]]) for b in bodies]
            out["unconstrained"]["recall_at_10"] = round(recall(found, truth), 4)
        few = (rows if graph_rows is None else graph_rows)[: args.graph_queries]
        out["category"] = percentiles(timed([path(r, category=categories[r]) for r in few])[0])
        out["same_brand"] = percentiles(timed([path(r, same_brand="true") for r in few])[0])
        status = Path(f"/proc/{process.pid}/status").read_text()
        out["peak_rss_mb"] = round(int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024)
        connection.close()
        log(f"service {strategy}", out)
        return out
    finally:
        process.terminate()
        process.wait(timeout=60)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base_build", type=Path, help="a real build with real embeddings (k3m embed)")
    parser.add_argument("--copies", type=int, default=23, help="catalog copies (fashion44k x 23 = 1,022,143 items)")
    parser.add_argument("--noise", type=float, default=0.3, help="noise norm / median 10th-neighbour distance")
    parser.add_argument("--work", type=Path, required=True, help="directory for the catalog, store and graph state")
    parser.add_argument("--kinds", nargs="+", default=["hnsw", "ivf"])
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--graph-queries", type=int, default=100, help="queries per graph-constrained measurement")
    parser.add_argument("--stages", nargs="+", default=["graph", "index", "service"])
    parser.add_argument("--graph-database", help="a database holding the base build (default: load the large catalog "
                                                 "into bench<copies>)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("K3M_DATA_DIR", str((args.work / "data").resolve()))
    database = args.graph_database or f"bench{args.copies}"
    k = 10

    report: dict = {"machine": describe(("numpy", "faiss-cpu", "fastapi", "uvicorn", "neo4j", "arcadedb-embedded")),
                    "targets": TARGETS, "base_build": str(args.base_build), "copies": args.copies}
    base_store = EmbeddingStore.open(args.base_build)
    build = CatalogBuild.open(replicated_catalog(CatalogBuild.open(args.base_build), args.copies, args.work))
    store = synthetic_store(base_store, build, args.noise, args.seed)
    report["catalog"] = {
        "items": build.num_items, "dim": int(store.meta["dim"]), "base_model": base_store.model_id,
        "how": (f"fashion44k's records x {args.copies} with new ids (same titles, properties, categories; no images); "
                f"vectors: each copy = its item's real K3M vector + Gaussian noise of norm {args.noise} x the median "
                f"distance of real items to their 10th neighbour ({store.meta['synthetic']['noise_norm']:.4f}); "
                f"synthetic-size vectors, not a model's output")}
    rng = np.random.default_rng(args.seed)
    rows = rng.choice(build.num_items, args.queries, replace=False)
    # queries with graph constraints: items the graph holds
    graph_rows = rows
    if args.graph_database:
        base_ids = base_store.ids[rng.choice(len(base_store.ids), args.graph_queries, replace=False)]
        graph_rows = store.rows(base_ids.tolist())
    db = None
    if "graph" in args.stages and args.graph_database:
        from kg.graph_db import connect

        db = connect(database=database, create=False)
        report["graph"] = {"database": database, "holds": "the base build (copy 0's ids)"}
    elif "graph" in args.stages:
        db, report["graph_load"] = loaded_graph(build, database)
        report["graph"] = {"database": database, "holds": "the large catalog"}
    try:
        if "index" in args.stages:
            report["in_process"] = in_process(store, build, db, args.kinds, rows, k, args, graph_rows)
        if "service" in args.stages:
            store = EmbeddingStore.open(build.path, MODEL_ID)
            exact = ExactIndex(store)
            truth = exact_truth(exact, rows, k)
            report["service"] = {strategy: service(build.path, database, store, build, rows, k, args, strategy, truth,
                                                   graph_rows)
                                 for strategy in ("auto", "client")}
    finally:
        if db is not None:
            db.close()
    report["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    text = json.dumps(report, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
