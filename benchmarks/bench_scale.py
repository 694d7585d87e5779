"""Scale benchmark: every stage of the pipeline on catalogs of N items made from fashion44k's rows.

    python benchmarks/bench_scale.py --sizes 44441 250000 1000000 --work /tmp/scale [--json OUT] [--plot OUT.png]

**The catalog** (``make_catalog``): fashion44k's 44,441 real records, repeated until N:
copy 0 is the catalog itself; copy k of a record gets the id ``ID~k``, the same title,
attributes and category, and the photo of another product of the same article type (the
k-th after it in the type's list), so every (title, photo) pair is new while the titles
repeat N/44,441 times and the 44,072 photos about as often. It is written as a
``styles.jsonl.gz`` beside a copy of the fashion44k mapping whose image path names that
photo, and imported like any catalog. Features are content-keyed, so beyond the first 44k
items the feature cache is hit: the ``features`` stage measures its bookkeeping only (unique
content only), every other stage works on all N items.

**Stages**, each its own process, timed and watched (peak RSS = the process's VmHWM: its
anonymous memory plus the file pages it maps, e.g. the feature cache's tables; its child
processes, and the graph server, reported apart):

    import       k3m import (2 decoding workers)
    rdf          k3m kg load --rdf
    graph        k3m kg load --graph into an empty database of a running server (cold JVM)
    features     k3m pretrain --features (the feature cache checked, nothing new to compute past 44k)
    pretrain     k3m pretrain, the cpu preset (frozen features), --steps steps of 256 items
    embed        k3m embed --no-graph --index exact: the vectors of every item
    index        k3m embed --index auto --rebuild-index --no-graph: the store reused, the FAISS index built
    service      k3m serve-api: top-10 similar items over HTTP, without and with a graph constraint
    recall       recall@10 of the index against exact search (cosine) on --recall-queries items
    cli          k3m query similar ID --k 10 (wall time of the command)
    completion   k3m query complete --property P (every item lacking P ranked, suggestions written)
    write-back   k3m embed (store and index reused): the vectors onto the graph's items; last, and
                 with --writeback-minutes cut after that long (the rate of the part written)

Results: JSON (machine, per size each stage's figures) and a log-log plot of wall time and
peak RSS against N. The issue's targets are checked on the largest size.
"""
from __future__ import annotations

import argparse
import gzip
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import numpy as np

from machine import describe  # benchmarks/machine.py

REPO = Path(__file__).resolve().parents[1]
FASHION = Path(os.environ.get("K3M_DATASETS", REPO.parent / "shared" / "datasets")) / "fashion44k"
PROPERTY = "Fabric"  # completion: a property about half the categories carry
TARGETS = {  # issue 17, at 1M items on 2 cores / 24 GB
    "import_s": 480, "rdf_triples_per_s": 500_000, "graph_triples_per_s": 70_000, "embed_items_per_s": 3_000,
    "writeback_items_per_s": 20_000, "similar_p50_ms": 5.0, "similar_constrained_p50_ms": 20.0, "recall_at_10": 0.95,
    "cli_s": 1.0, "pretrain_items_per_s": 500, "peak_rss_mb": 4096,
}


def log(*parts) -> None:
    print(f"[bench_scale {time.strftime('%H:%M:%S')}]", *parts, file=sys.stderr, flush=True)


# -- the catalog -------------------------------------------------------------------------------
def make_catalog(n: int, out: Path) -> dict:
    """``out/styles.jsonl.gz`` of ``n`` records and ``out/mapping.yaml`` (see the module doc)."""
    out.mkdir(parents=True, exist_ok=True)
    with gzip.open(FASHION / "styles.jsonl.gz", "rt", encoding="utf-8") as stream:
        base = [json.loads(line) for line in stream]
    import zipfile

    with zipfile.ZipFile(FASHION / "images.zip") as archive:
        photos = {name[len("images/"):-len(".jpg")] for name in archive.namelist() if name.endswith(".jpg")}
    by_type: dict[str, list[int]] = {}
    for row, record in enumerate(base):
        if str(record["id"]) in photos:
            by_type.setdefault((record.get("articleType") or {}).get("typeName"), []).append(row)
    position = {row: (kind, at) for kind, rows in by_type.items() for at, row in enumerate(rows)}
    started = time.perf_counter()
    with gzip.open(out / "styles.jsonl.gz", "wt", encoding="utf-8", compresslevel=1) as stream:
        for j in range(n):
            k, row = divmod(j, len(base))
            record = dict(base[row])
            own = str(record["id"])
            if k:
                record["id"] = f"{own}~{k}"
            if row in position:
                kind, at = position[row]
                rows = by_type[kind]
                record["photo"] = str(base[rows[(at + k) % len(rows)]]["id"])
            stream.write(json.dumps(record) + "\n")
    mapping = (REPO / "etl" / "mappings" / "fashion44k.yaml").read_text()
    mapping = mapping.replace("name: fashion44k", "name: fashion44k-scale").replace('path: "images/{id}.jpg"',
                                                                                      'path: "images/{photo}.jpg"')
    assert "{photo}" in mapping, "the fashion44k mapping's image path changed"
    (out / "mapping.yaml").write_text(mapping)
    return {"items": n, "copies": -(-n // len(base)), "seconds": round(time.perf_counter() - started, 1),
            "how": ("fashion44k's records repeated: copy k>0 of a record has the id ID~k, the same title, attributes and "
                    "category, and the photo of the k-th next product of the same article type (titles repeat "
                    f"{n / len(base):.1f}x, each photo about as often; every (title, photo) pair is new)")}


# -- watching a stage ---------------------------------------------------------------------------
def _status(pid: int) -> dict:
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
                out[key] = int(value.split()[0]) / 1024
    except (OSError, ValueError):
        pass
    return out


def _children(pid: int) -> list[int]:
    try:
        import psutil

        return [c.pid for c in psutil.Process(pid).children(recursive=True)]
    except Exception:  # noqa: BLE001 - a process gone between two looks
        return []


class Watch:
    """Peak memory of a process (VmHWM, and the most anonymous / file-backed RSS seen), of its
    children (the most RSS any one had) and of another process (the graph server), sampled."""

    def __init__(self, pid: int, server_pid: int | None = None, every: float = 0.1):
        self.pid, self.server_pid, self.every = pid, server_pid, every
        self.peak = {"rss": 0.0, "anon": 0.0, "file": 0.0, "child_rss": 0.0, "server_rss": 0.0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            s = _status(self.pid)
            if s:
                self.peak["rss"] = max(self.peak["rss"], s.get("VmHWM", 0))
                self.peak["anon"] = max(self.peak["anon"], s.get("RssAnon", 0))
                self.peak["file"] = max(self.peak["file"], s.get("RssFile", 0))
            for child in _children(self.pid):
                self.peak["child_rss"] = max(self.peak["child_rss"], _status(child).get("VmRSS", 0))
            if self.server_pid:
                self.peak["server_rss"] = max(self.peak["server_rss"], _status(self.server_pid).get("VmRSS", 0))
            self._stop.wait(self.every)

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join()
        return {f"peak_{k}_mb": round(v) for k, v in self.peak.items() if v or k == "rss"}


def run_stage(name: str, command: list[str], env: dict, server_pid: int | None = None, timeout: float = 7200,
              cut: bool = False) -> dict:
    """``cut``: reaching ``timeout`` ends the stage (killed, reported with ``cut_at_s``), not the run."""
    log(name, " ".join(command) if "-c" not in command else f"{command[0]} -c SCRIPT {' '.join(command[3:])}")
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watch = Watch(process.pid, server_pid)
    timed_out = False
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
        timed_out = True
    wall = time.perf_counter() - started
    memory = watch.stop()
    if process.returncode != 0 and not (cut and timed_out):
        raise RuntimeError(f"stage {name} failed (exit {process.returncode}):\n{stderr[-3000:]}")
    out = {"wall_s": round(wall, 2), **memory, "load_average": [round(x, 2) for x in os.getloadavg()]}
    if timed_out:
        out["cut_at_s"] = timeout
    log(name, json.dumps(out))
    return {**out, "_stdout": stdout, "_stderr": stderr}


def k3m(*args: str) -> list[str]:
    return [sys.executable, "-m", "k3m", *args]


def _json_tail(text: str) -> dict:
    """The last JSON document a command printed (its --json output)."""
    start = text.rfind("\n{") + 1 if text.rfind("\n{") >= 0 else text.find("{")
    return json.loads(text[start:])


def public(stage: dict) -> dict:
    return {k: v for k, v in stage.items() if not k.startswith("_")}


# -- the service and the searches ---------------------------------------------------------------
def percentiles(ms: list[float]) -> dict:
    return {"queries": len(ms), "p50_ms": round(float(np.percentile(ms, 50)), 2),
            "p99_ms": round(float(np.percentile(ms, 99)), 2), "mean_ms": round(float(np.mean(ms)), 2)}


def service_stage(build: Path, database: str, env: dict, ids: list[str], categories: list[str], server_pid: int,
                  queries: int) -> dict:
    started = time.perf_counter()
    process = subprocess.Popen(k3m("serve-api", str(build), "--port", "0", "--database", database), env=env, cwd=REPO,
                               stderr=subprocess.PIPE, text=True)
    watch = Watch(process.pid, server_pid)
    try:
        line = ""
        while "http://" not in line:
            line = process.stderr.readline()
            if process.poll() is not None:
                raise RuntimeError(f"serve-api ended: {line}{process.stderr.read()}")
        ready = time.perf_counter() - started
        host, port = re.search(r"http://([^:/]+):(\d+)", line).groups()
        connection = http.client.HTTPConnection(host, int(port), timeout=120)

        def timed(paths: list[str]) -> list[float]:
            ms = []
            for path in paths:
                t = time.perf_counter()
                connection.request("GET", path)
                response = connection.getresponse()
                body = response.read()
                ms.append((time.perf_counter() - t) * 1000)
                if response.status != 200:
                    raise RuntimeError(f"{path}: {response.status} {body[:300]!r}")
            return ms

        def similar(item_id: str, **query) -> str:
            return f"/items/{urllib.parse.quote(item_id)}/similar?" + urllib.parse.urlencode({"k": 10, **query})

        timed([similar(i) for i in ids[:20]])  # warm: the connection, the pages of the index
        out = {"seconds_to_ready": round(ready, 1)}
        out["similar"] = percentiles(timed([similar(i) for i in ids[:queries]]))
        few = max(20, queries // 3)
        out["similar_same_brand"] = percentiles(timed([similar(i, same_brand="true") for i in ids[:few]]))
        out["similar_category"] = percentiles(timed([similar(i, category=c) for i, c in zip(ids[:few], categories[:few])]))
        out["completion"] = percentiles(timed([f"/items/{urllib.parse.quote(i)}/completion?property={PROPERTY}&top_k=3"
                                               for i in ids[:few]]))
        connection.close()
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=120)
    out.update(watch.stop())
    out["load_average"] = [round(x, 2) for x in os.getloadavg()]
    log("service", json.dumps(out))
    return out


RECALL = r"""
import json, sys, time
import numpy as np
from k3m.embedding.store import EmbeddingStore
build, queries = sys.argv[1], int(sys.argv[2])
store = EmbeddingStore.open(build)
ann = store.ann_index()
n = len(store.ids)
rows = np.sort(np.random.default_rng(0).choice(n, min(queries, n), replace=False))
with store.matrix_file() as matrix:
    q = np.asarray(matrix.take(rows), np.float32)
    q /= np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    best = np.full((len(rows), 11), -np.inf, np.float32)
    best_rows = np.full((len(rows), 11), -1, np.int64)
    started = time.perf_counter()
    for start, chunk in matrix.chunks(32768):
        x = np.asarray(chunk, np.float32)
        x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        s = q @ x.T
        s[np.arange(len(rows))[(rows >= start) & (rows < start + len(x))], rows[(rows >= start) & (rows < start + len(x))] - start] = -np.inf
        scores = np.concatenate([best, s], axis=1)
        cand = np.concatenate([best_rows, np.broadcast_to(np.arange(start, start + len(x)), s.shape)], axis=1)
        top = np.argpartition(-scores, 10, axis=1)[:, :11]
        best, best_rows = np.take_along_axis(scores, top, 1), np.take_along_axis(cand, top, 1)
    exact_s = time.perf_counter() - started
order = np.argsort(-best, axis=1)[:, :10]
exact = np.take_along_axis(best_rows, order, 1)
tenth = np.take_along_axis(best, order, 1)[:, 9]
out = {"queries": len(rows), "exact_batch_s": round(exact_s, 2), "index": ann.describe() if ann is not None else {"kind": "exact"}}
if ann is not None:
    hits, ties, ms = [], [], []
    for n_, row in enumerate(rows.tolist()):
        t = time.perf_counter()
        found, scores = ann.search(q[n_], 10, exclude=row)
        ms.append((time.perf_counter() - t) * 1000)
        hits.append(len(set(found.tolist()) & set(exact[n_].tolist())) / 10)
        ties.append(min(1.0, float(np.sum(scores >= tenth[n_] - 1e-6)) / 10))  # a tie with the 10th counts
    out.update({"recall_at_10": round(float(np.mean(hits)), 4), "recall_at_10_with_ties": round(float(np.mean(ties)), 4),
                "index_search_p50_ms": round(float(np.percentile(ms, 50)), 3),
                "index_search_p99_ms": round(float(np.percentile(ms, 99)), 3)})
print(json.dumps(out))
"""


# -- one size ---------------------------------------------------------------------------------
def run_size(n: int, args, env: dict) -> dict:
    work = args.work / f"n{n}"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    data = work / "data"
    env = {**env, "K3M_DATA_DIR": str(data)}
    result: dict = {"items": n}
    result["catalog"] = make_catalog(n, work / "catalog")
    log("catalog", result["catalog"])
    build = work / "build"
    stages = result["stages"] = {}

    s = run_stage("import", k3m("import", str(work / "catalog" / "styles.jsonl.gz"), "--mapping",
                                str(work / "catalog" / "mapping.yaml"), "--out", str(build),
                                "--images", str(FASHION / "images.zip")), env)
    summary = json.loads((build / "summary.json").read_text())
    stages["import"] = {**public(s), "items": summary["items"], "triples": summary["triples"],
                        "images": summary["images"], "images_npy_gb": round((build / "images.npy").stat().st_size / 2**30, 2)}
    triples = summary["triples"]

    s = run_stage("rdf", k3m("kg", "load", str(build), "--rdf"), env)
    stages["rdf"] = {**public(s), "triples": triples, "triples_per_s": round(triples / s["wall_s"])}

    serve = subprocess.run(k3m("kg", "serve", "--detach", "--database", "scale"), env=env, cwd=REPO, capture_output=True,
                           text=True, check=True)
    server_pid = json.loads((data / "arcadedb" / "server.json").read_text())["pid"]
    log("graph server", server_pid, serve.stderr.strip()[-200:])
    try:
        s = run_stage("graph", k3m("kg", "load", str(build), "--graph", "--database", "scale"), env, server_pid)
        stages["graph"] = {**public(s), "triples": triples, "triples_per_s": round(triples / s["wall_s"])}

        s = run_stage("features", k3m("pretrain", "--set", f"build={build}", "--features"), env)
        stages["features"] = {**public(s), "log": [l for l in s["_stderr"].splitlines() if "[k3m features]" in l][-6:]}

        run_dir = work / "run"
        s = run_stage("pretrain", k3m("pretrain", "--set", f"build={build}", "--set", f"run_dir={run_dir}",
                                      "--set", f"max_steps={args.steps}", "--set", "progress=false",
                                      "--set", f"log_every={max(1, args.steps // 5)}", "--set", "valid_items=256"), env)
        summary = json.loads((run_dir / "summary.json").read_text())
        stages["pretrain"] = {**public(s), "steps": summary["steps"], "batch_size": 256,
                              "items_per_s": round(summary["items_per_s"], 1)}

        s = run_stage("embed", k3m("embed", str(build), "--checkpoint", str(run_dir), "--no-graph", "--index", "exact",
                                   "--json"), env)
        report = _json_tail(s["_stdout"])["embed"]
        stages["embed"] = {**public(s), "items": report["items"], "dim": report["dim"],
                           "items_per_s": report["items_per_s"], "embed_seconds": round(report["seconds"], 1)}

        s = run_stage("index", k3m("embed", str(build), "--checkpoint", str(run_dir), "--no-graph", "--index", "auto",
                                   "--rebuild-index", "--json"), env)
        stages["index"] = {**public(s), "index": _json_tail(s["_stdout"])["index"]}

        import pyarrow.parquet as pq

        items = pq.ParquetFile(build / "items.parquet").read(columns=["item_id", "category"])
        rng = np.random.default_rng(0)
        picks = rng.choice(items.num_rows, min(args.queries, items.num_rows), replace=False)
        ids = [items.column("item_id")[int(r)].as_py() for r in picks]
        categories = [items.column("category")[int(r)].as_py() or "" for r in picks]
        stages["service"] = service_stage(build, "scale", env, ids, categories, server_pid, args.queries)

        s = run_stage("recall", [sys.executable, "-c", RECALL, str(build), str(args.recall_queries)], env)
        stages["recall"] = {**public(s), **json.loads(s["_stdout"].strip().splitlines()[-1])}

        walls = []
        for item_id in ids[:5]:
            s = run_stage("cli", k3m("query", "similar", item_id, "--k", "10", "--build", str(build), "--database", "scale"),
                          env, server_pid)
            walls.append(s["wall_s"])
        stages["cli"] = {"wall_s": round(float(np.median(walls)), 2), "walls": walls, "peak_rss_mb": s["peak_rss_mb"]}

        s = run_stage("completion", k3m("query", "complete", "--property", PROPERTY, "--build", str(build),
                                        "--database", "scale", "--json"), env, server_pid)
        doc = _json_tail(s["_stdout"])
        stages["completion"] = {**public(s), **{k: doc[k] for k in ("items_lacking", "items_suggested",
                                                                    "suggestions_written", "precision_at_1", "seconds")}}
        # last, so that a cut (--writeback-minutes) leaves every other stage whole; the write-back
        # is idempotent per item, so a cut one is an unfinished one, resumed by the next `k3m embed`
        s = run_stage("write-back", k3m("embed", str(build), "--checkpoint", str(run_dir), "--database", "scale",
                                        "--json"), env, server_pid, timeout=args.writeback_minutes * 60 or 7200,
                      cut=bool(args.writeback_minutes))
        if "cut_at_s" in s:
            written = graph_embedded_items(env)
            stages["write-back"] = {**public(s), "written": written, "of": n, "items_per_s": round(written / s["wall_s"], 1),
                                    "note": f"cut after {args.writeback_minutes} min (--writeback-minutes): the rate of "
                                            "the part written, in the stage's wall time (process start included)"}
        else:
            graph = _json_tail(s["_stdout"])["graph"]
            stages["write-back"] = {**public(s), "written": graph["written"], "items_per_s": graph["items_per_s"],
                                    "writeback_seconds": round(graph["seconds"], 1)}
        stages["graph_server"] = {"peak_rss_mb": max(st.get("peak_server_rss_mb", 0) for st in stages.values()
                                                     if isinstance(st, dict)),
                                  "disk_gb": round(_du(data / "arcadedb") / 2**30, 2)}
    finally:
        subprocess.run(k3m("kg", "stop"), env=env, cwd=REPO, capture_output=True, text=True)
    result["disk_gb"] = {"build": round(_du(build) / 2**30, 2), "embeddings": round(_du(build / "embeddings") / 2**30, 2)}
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return result


GRAPH_EMBEDDED = """
from kg.graph_db import connect
with connect(database="scale") as db:
    print(db.run("MATCH (i:Item) WHERE i.embedding_model IS NOT NULL RETURN count(i) AS n")[0]["n"])
"""


def graph_embedded_items(env: dict) -> int:
    """Items of the graph carrying an embedding (after a cut write-back)."""
    done = subprocess.run([sys.executable, "-c", GRAPH_EMBEDDED], env=env, cwd=REPO, capture_output=True, text=True,
                          check=True)
    return int(done.stdout.strip().splitlines()[-1])


def _commit() -> str | None:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    return done.stdout.strip() or None


def _du(path: Path) -> int:
    return sum(p.stat().st_blocks * 512 for p in Path(path).rglob("*") if p.is_file()) if Path(path).exists() else 0


# -- the report -------------------------------------------------------------------------------
def targets_table(result: dict) -> list[dict]:
    st = result["stages"]
    rows = [
        ("import", st["import"]["wall_s"], "s", TARGETS["import_s"], "<="),
        ("RDF load", st["rdf"]["triples_per_s"], "triples/s", TARGETS["rdf_triples_per_s"], ">="),
        ("graph load (cold)", st["graph"]["triples_per_s"], "triples/s", TARGETS["graph_triples_per_s"], ">="),
        ("embed (cached features)", st["embed"]["items_per_s"], "items/s", TARGETS["embed_items_per_s"], ">="),
        ("write-back", st["write-back"]["items_per_s"], "items/s", TARGETS["writeback_items_per_s"], ">="),
        ("similar p50 (service)", st["service"]["similar"]["p50_ms"], "ms", TARGETS["similar_p50_ms"], "<="),
        ("similar p50, same brand (service)", st["service"]["similar_same_brand"]["p50_ms"], "ms",
         TARGETS["similar_constrained_p50_ms"], "<="),
        ("similar p50, category (service)", st["service"]["similar_category"]["p50_ms"], "ms",
         TARGETS["similar_constrained_p50_ms"], "<="),
        ("recall@10", st["recall"].get("recall_at_10", 1.0), "", TARGETS["recall_at_10"], ">="),
        ("CLI similar", st["cli"]["wall_s"], "s", TARGETS["cli_s"], "<="),
        ("pretraining", st["pretrain"]["items_per_s"], "items/s", TARGETS["pretrain_items_per_s"], ">="),
    ]
    for name, stage in st.items():
        # graph_server is the server's own; NAME_at_COMMIT is a superseded run kept for the record
        if isinstance(stage, dict) and "peak_rss_mb" in stage and name != "graph_server" and "_at_" not in name:
            rows.append((f"peak RSS: {name}", stage["peak_rss_mb"], "MB", TARGETS["peak_rss_mb"], "<="))
    return [{"what": w, "measured": v, "unit": u, "target": t, "met": bool(v <= t if op == "<=" else v >= t)}
            for w, v, u, t, op in rows]


def _full_wall(stage: dict, items: int) -> float:
    return items / stage["items_per_s"] if "cut_at_s" in stage and stage.get("items_per_s") else stage["wall_s"]


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["import", "rdf", "graph", "features", "pretrain", "embed", "index", "write-back", "recall", "completion"]
    sizes = [r["items"] for r in results]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    for name in names:
        if all(name in r["stages"] for r in results):
            # a cut stage (write-back) is drawn as the time all of N would take at its measured rate
            left.plot(sizes, [_full_wall(r["stages"][name], r["items"]) for r in results], marker="o",
                      label=name + (" (cut: extrapolated)" if any("cut_at_s" in r["stages"][name] for r in results) else ""))
            right.plot(sizes, [r["stages"][name]["peak_rss_mb"] for r in results], marker="o", label=name)
    if all("service" in r["stages"] for r in results):
        right.plot(sizes, [r["stages"]["service"]["peak_rss_mb"] for r in results], marker="s", label="service")
        right.plot(sizes, [r["stages"]["graph_server"]["peak_rss_mb"] for r in results], marker="^", ls="--",
                   label="graph server (apart)")
    for axis, title, unit in ((left, "wall time", "seconds"), (right, "peak RSS of the stage's process", "MB")):
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("items")
        axis.set_ylabel(unit)
        axis.set_title(title)
        axis.grid(True, which="both", alpha=0.3)
    right.axhline(TARGETS["peak_rss_mb"], color="red", lw=1, ls=":", label="4 GB target")
    right.legend(fontsize=7, ncol=2)
    fig.suptitle("k3m on fashion44k rows repeated to N items (2 cores)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[44441, 250_000, 1_000_000])
    parser.add_argument("--work", type=Path, required=True, help="where catalogs, builds and graph state go (large)")
    parser.add_argument("--features", type=Path, default=None, help="the feature cache root (default: WORK/features)")
    parser.add_argument("--steps", type=int, default=30, help="pretraining steps (batch 256)")
    parser.add_argument("--queries", type=int, default=300, help="service queries (a third of them constrained)")
    parser.add_argument("--recall-queries", type=int, default=300)
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS of the stages (default: the cores)")
    parser.add_argument("--keep", action="store_true", help="keep each size's catalog, build and graph")
    parser.add_argument("--writeback-minutes", type=float, default=0,
                        help="cut the write-back (the last stage) after this long and report the rate of the part "
                             "written (default: write every item)")
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "scale.json")
    parser.add_argument("--plot", type=Path, default=REPO / "benchmarks" / "results" / "scale.png")
    args = parser.parse_args()
    args.work = args.work.resolve()
    args.work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "K3M_FEATURES_DIR": str((args.features or args.work / "features").resolve()),
           "OMP_NUM_THREADS": str(args.threads or os.cpu_count())}
    report = {"benchmark": "scale", "machine": describe(("numpy", "torch", "faiss-cpu", "pyarrow", "pyoxigraph", "neo4j",
                                                         "arcadedb-embedded", "fastapi", "ray")),
              "targets": TARGETS, "command": " ".join(sys.argv), "threads": env["OMP_NUM_THREADS"], "sizes": []}
    if args.json.is_file():  # sizes measured by an earlier invocation stay (one size per call is fine)
        earlier = json.loads(args.json.read_text())
        report["sizes"] = [r for r in earlier.get("sizes", []) if r["items"] not in args.sizes]
        for r in report["sizes"]:  # each size keeps the invocation (and so the code, threads) that measured it
            r.setdefault("threads", earlier.get("threads"))
            r.setdefault("command", earlier.get("command"))
    for n in args.sizes:
        log(f"--- {n} items; disk free {shutil.disk_usage(args.work).free / 2**30:.0f} GB; load {os.getloadavg()}")
        result = run_size(n, args, env)
        result["threads"], result["command"] = env["OMP_NUM_THREADS"], report["command"]
        result["commit"] = _commit()
        result["machine_load_at_end"] = [round(x, 2) for x in os.getloadavg()]
        result["targets"] = targets_table(result)
        report["sizes"] = sorted(report["sizes"] + [result], key=lambda r: r["items"])
        report["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1, default=str) + "\n")
        if len(report["sizes"]) > 1:
            plot(report["sizes"], args.plot)
        for row in result["targets"]:
            log(f"{n}: {row['what']}: {row['measured']} {row['unit']} (target {row['target']}) "
                f"{'met' if row['met'] else 'NOT met'}")


if __name__ == "__main__":
    main()
