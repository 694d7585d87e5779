"""``k3m embed --checkpoint CKPT BUILD``: item embeddings into the build and onto the graph.

    k3m embed --checkpoint runs/tiny BUILD               # store in BUILD/embeddings/<model>/ + graph
    k3m embed --checkpoint runs/tiny BUILD --float16 --no-graph
    k3m embed --checkpoint runs/cpu BUILD --engine ray [--address HOST:6379 | --workers 4]   # on Ray Data
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from k3m.data import FACTS
from k3m.embedding.ann_index import KINDS, AnnSettings, ensure_index
from k3m.embedding.embed import ENGINES, EmbedSettings, embed_build
from kg.output import progress_printer


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "embed", help="item embeddings c* of a build, into the build and onto the graph's Item nodes",
        description=__doc__.split("\n\n")[0] + " See docs/query.md.",
    )
    p.add_argument("build", type=Path, help="catalog build directory (k3m import)")
    p.add_argument("--checkpoint", required=True, type=Path, help="checkpoint dir, or a run dir (its latest checkpoint)")
    p.add_argument("--float16", action="store_true", help="store c* as float16 (half the disk; search widens to float32)")
    p.add_argument("--facts", choices=FACTS, default=EmbedSettings.facts, help="triples the model reads (default: train)")
    p.add_argument("--batch-size", type=int, default=EmbedSettings.batch_size)
    p.add_argument("--device", default=EmbedSettings.device, help="auto | cpu | cuda | cuda:N")
    p.add_argument("--model-id", help="name of these embeddings (default: <run>-<step>-<weights hash>)")
    p.add_argument("--engine", choices=ENGINES, default="local",
                   help="where the items run: this process (local, the default) or Ray Data (ray; docs/scale.md)")
    p.add_argument("--address", default=None, metavar="HOST:PORT",
                   help="with --engine ray: the Ray cluster (default $RAY_ADDRESS, else a local Ray)")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="with --engine ray: encoder actors of a local Ray (default 2; a cluster's GPUs set it there)")
    p.add_argument("--recompute", action="store_true", help="recompute even if the build holds this model's embeddings")
    p.add_argument("--index", choices=KINDS, default="auto",
                   help="nearest-neighbour index beside the store: auto (default: none below 50k items, HNSW below "
                        "500k, IVF above), exact (none), hnsw, ivf; an existing index is updated, not rebuilt")
    p.add_argument("--rebuild-index", action="store_true", help="build the index anew")
    p.add_argument("--no-graph", action="store_true", help="do not write the embeddings onto the graph")
    p.add_argument("--force", action="store_true", help="rewrite graph items that already carry these embeddings")
    p.add_argument("--write-batch", type=int, default=None, help="items per graph transaction")
    p.add_argument("--database", help="graph database (default: the one the build was loaded into, else k3m)")
    p.add_argument("--data-dir", type=Path, help="state directory of the embedded graph (default $K3M_DATA_DIR or ./data)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from etl.errors import InvalidValue
    from kg import loaded_into
    from kg.graph_db import connect
    from kg.paths import DATA_DIR_ENV

    if args.engine != "ray" and (args.address or args.workers is not None):
        raise InvalidValue("--address and --workers go with --engine ray")
    if args.workers is not None and args.workers < 1:
        raise InvalidValue("--workers must be at least 1")
    settings = EmbedSettings(
        batch_size=args.batch_size, device=args.device, dtype="float16" if args.float16 else "float32",
        facts=args.facts, model_id=args.model_id, recompute=args.recompute, index=AnnSettings(kind=args.index),
    )
    if not args.no_graph:  # a bad write-back setting fails before the model runs
        from k3m.embedding.writeback import WritebackSettings

        wb = WritebackSettings(force=args.force, **({"batch_size": args.write_batch} if args.write_batch is not None else {}))
    store, report = embed_build(args.checkpoint, args.build, settings, progress=progress_printer("embedded"),
                                engine=args.engine, address=args.address, workers=args.workers)
    out = {"embed": report.as_dict()}
    # a store written just now carries its index already (settings.index); a reused one may not
    ann = ensure_index(store, settings.index, rebuild=args.rebuild_index)
    out["index"] = ann.describe() if ann is not None else {"kind": "exact"}
    if not args.no_graph:
        from k3m.embedding.writeback import ensure_native_index, write_back

        if args.data_dir is not None:
            os.environ[DATA_DIR_ENV] = str(args.data_dir.resolve())
        with connect(database=args.database or loaded_into.database_of(args.build), create=True) as db:
            wb_report = write_back(db, store, wb, progress=progress_printer("store rows brought to the graph") if sys.stderr.isatty() else None)
            native = ensure_native_index(db, report.dim)
            out["graph"] = {**wb_report.as_dict(), "server": db.capabilities.agent, "native_vector_index": native}
        if wb_report.missing_in_graph == wb_report.items:
            print(f"k3m embed: warning: none of the items is in the graph; load it first: k3m kg load {args.build} --graph",
                  file=sys.stderr)
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        e = out["embed"]
        if e["reused"]:
            how = "reused"
        elif e["computed"] < e["items"]:
            how = f"{e['computed']} computed, {e['items'] - e['computed']} unchanged kept, {e['items_per_s']:.0f} items/s on {e['device']}"
        else:
            how = f"{e['items_per_s']:.0f} items/s on {e['device']}"
        print(f"embeddings {e['model_id']}: {e['items']} items x {e['dim']} ({how}) -> {e['store']}")
        i = out["index"]
        if i["kind"] != "exact":
            last = i.get("last_update") or {}
            print(f"index: {i['kind']} {i['params']}, {i['live']} items ({last.get('mode', '')}: "
                  f"{last.get('added', 0)} added, {last.get('removed', 0)} removed)")
        if "graph" in out:
            g = out["graph"]
            print(f"graph: {g['written']} written ({g['items_per_s']:.0f} items/s), {g['skipped_current']} already current, "
                  f"{g['missing_in_graph']} not in the graph")
    return 0
