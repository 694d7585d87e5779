"""`k3m sync`: bring a build and everything made from it up to date with the catalog's new version.

    k3m sync catalog-2026-12-01.jsonl.gz --mapping fashion44k --build data/builds/shop

One command for the daily change: ``k3m import --update`` (the diff in ``BUILD/sync.json``),
then what the build already has follows it, each stage applying only the change:

* its RDF store (if ``k3m kg load --rdf`` made one at the default place) and the graph
  database it was loaded into (``BUILD/graph.json``): removed items and their edges deleted,
  changed items rewritten, values no item uses any more removed, stale embeddings and
  attribute suggestions of changed items dropped;
* every embedding store of the build whose checkpoint is still there (and each
  ``--checkpoint``): only new and changed items run through the model (their features, when
  the model reads frozen encoders, are computed into the feature cache first), the vectors
  are written back onto the graph's items.

Each stage is idempotent: after a failure, run the same command again. Two syncs of one
build run one after the other (the second says it waits). The update is refused, everything
left as it was, when rejected rows of the new version would remove items, when it removes
more than 10% of the items, or when the mapping is not the build's (``--allow-removals``,
``--mapping-changed``; docs/etl.md); rejected rows are reported by reason either way.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from kg.output import progress_printer
from kg.paths import DATA_DIR_ENV


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "sync", help="update a build, its RDF store, graph and embeddings to a new version of the catalog",
        description=__doc__.split("\n\n")[0] + " See the README's 'Catalogs change' and docs/etl.md.",
    )
    p.add_argument("sources", nargs="+", metavar="SOURCE", help="the catalog's new version: file(s), read in order")
    p.add_argument("--mapping", required=True, metavar="NAME_OR_FILE", help="the mapping the build was imported with")
    p.add_argument("--build", required=True, type=Path, metavar="BUILD_DIR", help="the build to update (in place)")
    p.add_argument("--allow-removals", action="store_true",
                   help="apply the update even when rejected rows of the new version remove items, or more than 10%% "
                        "of the items go (refused otherwise)")
    p.add_argument("--mapping-changed", action="store_true",
                   help="apply the update with another mapping than the build was imported with (refused otherwise)")
    p.add_argument("--images", default=None, metavar="ZIP_OR_DIR", help="image root overriding the mapping's")
    p.add_argument("--workers", type=int, default=2, help="image-decoding processes, 0 = none (default 2)")
    p.add_argument("--checkpoint", type=Path, action="append", default=[],
                   help="also embed with this checkpoint (repeatable; stores already in the build are kept current anyway)")
    p.add_argument("--database", help="graph database (default: the one the build was loaded into)")
    p.add_argument("--data-dir", type=Path, help=f"state directory (default ${DATA_DIR_ENV} or ./data)")
    p.add_argument("--no-rdf", action="store_true", help="leave the RDF store as it is")
    p.add_argument("--no-graph", action="store_true", help="leave the graph database as it is")
    p.add_argument("--no-embed", action="store_true", help="leave the embeddings as they are")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.data_dir is not None:
        os.environ[DATA_DIR_ENV] = str(args.data_dir.resolve())
    report = sync_catalog(args.sources, args.mapping, args.build, images=args.images, workers=args.workers,
                          checkpoints=args.checkpoint, database=args.database, rdf=not args.no_rdf,
                          graph=not args.no_graph, embed=not args.no_embed, allow_removals=args.allow_removals,
                          mapping_changed=args.mapping_changed)
    u = report["import"]["update"]
    for line in u["warnings"]:  # what was lost or changed, loudly, whatever the output format
        print(f"k3m sync: warning: {line}", file=sys.stderr)
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    rejected = (f"; {u['rejected_rows']} rows rejected ({', '.join(f'{k}={v}' for k, v in u['rejected'].items())}), "
                f"see {args.build}/rejects.jsonl" if u["rejected_rows"] else "")
    print(f"k3m sync: {u['added']} added, {u['changed']} changed, {u['removed']} removed, {u['unchanged']} unchanged "
          f"({report['import']['seconds']:.1f}s){rejected}")
    for stage in ("rdf", "graph"):
        if stage in report:
            what = report[stage].get("mode", "loaded")
            print(f"k3m sync: {stage}: {what} in {report[stage]['seconds']:.1f}s")
    for e in report.get("embed", []):
        line = f"k3m sync: embeddings {e['model_id']}: {e['computed']} computed in {e['seconds']:.1f}s"
        if "graph" in e:
            line += f", {e['graph']['written']} written to the graph"
        print(line)
    for line in report["skipped"]:
        print(f"k3m sync: note: {line}", file=sys.stderr)
    print(f"k3m sync: done in {report['seconds']:.1f}s")
    return 0


def sync_catalog(sources, mapping, build_path: str | Path, *, images: str | None = None, workers: int = 2,
                 checkpoints=(), database: str | None = None, rdf: bool = True, graph: bool = True,
                 embed: bool = True, allow_removals: bool = False, mapping_changed: bool = False) -> dict:
    """The update and every follow-up stage; returns a report with each stage's seconds.
    Syncs of one build run one at a time (:func:`etl.atomic.directory_lock`)."""
    from etl.atomic import directory_lock

    with directory_lock(build_path, "import or sync"):
        return _sync(sources, mapping, Path(build_path), images, workers, checkpoints, database, rdf, graph, embed,
                     allow_removals, mapping_changed)


def _sync(sources, mapping, build_path: Path, images, workers, checkpoints, database, rdf, graph, embed,
          allow_removals, mapping_changed) -> dict:
    from etl.build import import_catalog
    from etl.catalog_build import CatalogBuild
    from kg import loaded_into

    started = time.perf_counter()
    report: dict = {"skipped": []}
    summary = import_catalog(sources, mapping, build_path, images=images, workers=workers, update=True,
                             allow_removals=allow_removals, mapping_changed=mapping_changed)
    report["import"] = {"update": summary["update"], "seconds": summary["seconds"]}
    build = CatalogBuild.open(build_path)

    if rdf:
        from kg.rdf_store import load_rdf, store_dir

        if (store_dir(build) / "meta.json").is_file():
            report["rdf"] = _timed(lambda: load_rdf(build).as_dict())
        else:
            report["skipped"].append(f"no RDF store of {build_path} at {store_dir(build)}: `k3m kg load {build_path} --rdf` makes one")
    database = database or loaded_into.database_of(build_path)
    if graph and database is None:
        report["skipped"].append(f"{build_path} was never loaded into a graph database: `k3m kg load {build_path} --graph`")
    jobs = _embedding_jobs(build_path, checkpoints, report["skipped"]) if embed else []
    report["embed"] = []
    if graph and database is not None:
        from kg.graph_db import connect
        from kg.graph_load import load_graph

        with connect(database=database) as db:
            report["graph"] = _timed(lambda: {**load_graph(build, db, progress=progress_printer("graph items written")).as_dict(),
                                              "database": db.database})
            report["embed"] = [_embed(run, build_path, settings, db) for run, settings in jobs]
    else:
        report["embed"] = [_embed(run, build_path, settings, None) for run, settings in jobs]
    report["seconds"] = round(time.perf_counter() - started, 3)
    return report


def _embedding_jobs(build_path: Path, checkpoints, skipped: list[str]) -> list:
    """(ResolvedRun, EmbedSettings) for every store of the build that can be brought up to
    date, and for each extra checkpoint: each checkpoint resolved and its weights hashed once."""
    from k3m.embedding.embed import EmbedSettings
    from k3m.embedding.store import EmbeddingStore
    from k3m.model import WEIGHTS_NAME
    from k3m.model.checkpoint import CheckpointError
    from k3m.model.run import ResolvedRun

    jobs, seen = [], set()
    for model_id in EmbeddingStore.available(build_path):
        meta = EmbeddingStore(EmbeddingStore.root(build_path) / model_id).meta
        checkpoint = Path(meta.get("checkpoint", ""))
        run = None
        if (checkpoint / WEIGHTS_NAME).is_file():
            try:
                run = ResolvedRun.resolve(checkpoint)
            except (CheckpointError, FileNotFoundError):
                run = None
        if run is None or not run.weights_sha256.startswith(meta.get("weights_sha256", model_id.rsplit("-", 1)[-1])):
            skipped.append(f"embeddings {model_id}: its checkpoint {checkpoint} is gone or holds other weights; the "
                           f"store stays stale (never served) until `k3m embed --checkpoint CKPT {build_path}`")
            continue
        jobs.append((run, EmbedSettings(model_id=model_id, facts=meta.get("facts", "train"),
                                        dtype=meta.get("dtype", "float32"))))
        seen.add(run.path.resolve())
    for checkpoint in checkpoints:
        run = ResolvedRun.resolve(checkpoint)
        if run.path.resolve() not in seen:
            jobs.append((run, EmbedSettings()))
            seen.add(run.path.resolve())
    return jobs


def _embed(run, build_path: Path, settings, db) -> dict:
    from k3m.embedding.embed import embed_build
    from k3m.embedding.writeback import ensure_native_index, write_back

    started = time.perf_counter()
    store, report = embed_build(run, build_path, settings, progress=progress_printer("embedded"))
    out = report.as_dict()
    ann = store.ann_index()  # written with the store: updated for the changed rows, not rebuilt
    out["index"] = ann.describe() if ann is not None else {"kind": "exact"}
    if db is not None:
        out["graph"] = write_back(db, store).as_dict()
        ensure_native_index(db, report.dim)
    out["seconds"] = round(time.perf_counter() - started, 3)
    return out


def _timed(stage) -> dict:
    started = time.perf_counter()
    out = stage()
    return {**out, "seconds": round(time.perf_counter() - started, 3)}
