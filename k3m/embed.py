"""`k3m embed --checkpoint CKPT BUILD`: item representations c* for every item of a build.

    k3m embed --checkpoint runs/tiny BUILD               # store in BUILD/embeddings/<model>/ + graph
    k3m embed --checkpoint runs/tiny BUILD --float16 --no-graph

The model reads each item's title, image and triples (inductive: a build imported after
pretraining is embedded by the same checkpoint, no retraining). Batches run on the GPU when
one is present (bf16 autocast). Besides c*, the store keeps the LPM vectors of every
property and value of the build, so attribute completion needs no model at query time.

``facts``: ``train`` (default) feeds the model only the build's train triples, so held-out
facts stay unseen and completion's precision on them is honest; ``all`` feeds every triple
(use it for production embeddings of a catalog). Re-running with the same checkpoint reuses
the stored embeddings (``--recompute`` forces) and the graph write-back skips items that
already carry them (``--force`` rewrites).
"""
from __future__ import annotations

import hashlib
import json
import re
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

FACTS = ("train", "all")  # as k3m.data.dataset.FACTS


@dataclass(frozen=True)
class EmbedSettings:
    batch_size: int = 128  # items per forward pass
    device: str = "auto"  # auto = cuda when available, else cpu
    dtype: str = "float32"  # stored dtype of c*: float32 | float16
    facts: str = "train"  # triples the model reads: train | all (see module docstring)
    model_id: str | None = None  # None = derived from the checkpoint (run-step-weights hash)
    chunk: int = 2048  # items between progress reports
    recompute: bool = False  # recompute even when the store already holds this model's embeddings


@dataclass
class EmbedReport:
    model_id: str
    store: str
    items: int
    dim: int
    device: str
    reused: bool  # the store already held these embeddings
    seconds: float

    @property
    def items_per_s(self) -> float:
        return self.items / self.seconds if self.seconds and not self.reused else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "items_per_s": round(self.items_per_s, 1)}


def model_id_for(checkpoint: str | Path) -> str:
    """``<run>-<step>-<sha256 of the weights, 10 hex>``: readable and exact (two runs that
    share a name never share an id)."""
    from k3m.model import WEIGHTS_NAME
    from k3m.pretrain import find_checkpoint

    ckpt = find_checkpoint(checkpoint)
    digest = hashlib.sha256()
    with open(ckpt / WEIGHTS_NAME, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    run = ckpt.parent.parent.name if ckpt.parent.name == "checkpoints" else ckpt.parent.name
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{run}-{ckpt.name}").strip("._-") or "k3m"
    return f"{name[:100]}-{digest.hexdigest()[:10]}"


def resolve_device(device: str):
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def embed_build(checkpoint: str | Path, build_path: str | Path, settings: EmbedSettings = EmbedSettings(),
                progress=None):
    """Compute (or reuse) the build's embeddings; returns (EmbeddingStore, EmbedReport)."""
    import torch

    from etl.catalog_build import CatalogBuild
    from k3m.data import CatalogIndex
    from k3m.embedding_store import EmbeddingStore, check_model_id, write_store
    from k3m.evaluation.encoding import ItemEncoder
    from k3m.pretrain import find_checkpoint, load_pretrained, load_property_order

    started = time.perf_counter()
    build = CatalogBuild.open(build_path)
    ckpt = find_checkpoint(checkpoint)
    model_id = check_model_id(settings.model_id or model_id_for(ckpt))
    manifest_sha = hashlib.sha256((build.path / "manifest.json").read_bytes()).hexdigest()
    device = resolve_device(settings.device)

    existing = EmbeddingStore(EmbeddingStore.root(build.path) / model_id)
    if not settings.recompute and (existing.path / "meta.json").is_file():
        meta = existing.meta
        if meta.get("build_manifest_sha256") == manifest_sha and meta.get("facts") == settings.facts and meta.get("dtype") == settings.dtype:
            existing.check_build(build)
            return existing, EmbedReport(model_id, str(existing.path), meta["items"], meta["dim"], str(device), True,
                                         time.perf_counter() - started)

    model, tokenizer, _ = load_pretrained(ckpt)
    model = model.to(device).eval()
    encoder = ItemEncoder(model, tokenizer, CatalogIndex.from_build(build, facts=settings.facts, property_order=load_property_order(ckpt)), batch_size=settings.batch_size)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    rows = np.arange(build.num_items, dtype=np.int64)
    parts = []
    with torch.inference_mode(), autocast:
        for start in range(0, len(rows), settings.chunk):
            parts.append(encoder.encode(rows[start:start + settings.chunk]).numpy())
            if progress:
                progress(min(start + settings.chunk, len(rows)), len(rows))
        props = encoder.string_vectors(build.properties).numpy()
        values = encoder.string_vectors(build.values).numpy()
    embeddings = np.concatenate(parts) if parts else np.zeros((0, model.config.hidden_size), np.float32)
    seconds = time.perf_counter() - started
    meta = {
        "checkpoint": str(ckpt.resolve()),
        "created": datetime.now(timezone.utc).isoformat(timespec="microseconds"),
        "facts": settings.facts,
        "lpm_norm": int(model.config.lpm.norm),
        "build_manifest_sha256": manifest_sha,
        "device": str(device),
        "seconds": round(seconds, 3),
    }
    store = write_store(build.path, model_id, build.items["item_id"].to_numpy(dtype=object), embeddings, props, values,
                        meta, settings.dtype)
    return store, EmbedReport(model_id, str(store.path), len(rows), int(embeddings.shape[1]), str(device), False, seconds)


# -- command line ----------------------------------------------------------------------
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
    p.add_argument("--recompute", action="store_true", help="recompute even if the build holds this model's embeddings")
    p.add_argument("--no-graph", action="store_true", help="do not write the embeddings onto the graph")
    p.add_argument("--force", action="store_true", help="rewrite graph items that already carry these embeddings")
    p.add_argument("--write-batch", type=int, default=None, help="items per graph transaction")
    p.add_argument("--database", help="graph database (embedded default: k3m)")
    p.add_argument("--data-dir", type=Path, help="state directory of the embedded graph (default $K3M_DATA_DIR or ./data)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from k3m.query.connection import apply_data_dir, open_graph

    settings = EmbedSettings(
        batch_size=args.batch_size, device=args.device, dtype="float16" if args.float16 else "float32",
        facts=args.facts, model_id=args.model_id, recompute=args.recompute,
    )
    try:
        store, report = embed_build(args.checkpoint, args.build, settings, progress=_progress("embedded"))
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"k3m embed: error: {exc}", file=sys.stderr)
        return 2
    out = {"embed": report.as_dict()}
    if not args.no_graph:
        from k3m.embedding_writeback import WritebackSettings, write_back
        from k3m.query.vector_search import ensure_native_index

        apply_data_dir(args.data_dir)
        wb = WritebackSettings(force=args.force, **({"batch_size": args.write_batch} if args.write_batch else {}))
        with open_graph(args.database, args.build, create=True) as db:  # default: the database the build was loaded into
            wb_report = write_back(db, store, wb, progress=_progress("written to the graph") if sys.stderr.isatty() else None)
            native = ensure_native_index(db, report.dim)
            out["graph"] = {**wb_report.as_dict(), "server": db.capabilities.agent, "native_vector_index": native}
        if wb_report.missing_in_graph == wb_report.items:
            print(f"k3m embed: warning: none of the items is in the graph; load it first: k3m kg load {args.build} --graph",
                  file=sys.stderr)
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        e = out["embed"]
        how = "reused" if e["reused"] else f"{e['items_per_s']:.0f} items/s on {e['device']}"
        print(f"embeddings {e['model_id']}: {e['items']} items x {e['dim']} ({how}) -> {e['store']}")
        if "graph" in out:
            g = out["graph"]
            print(f"graph: {g['written']} written ({g['items_per_s']:.0f} items/s), {g['skipped_current']} already current, "
                  f"{g['missing_in_graph']} not in the graph")
    return 0


def _progress(what: str):
    tty = sys.stderr.isatty()

    def report(done: int, total: int) -> None:  # one updating line on a terminal, lines in a log
        print(f"{chr(13) if tty else ''}[k3m] {done}/{total} {what}", end="" if tty and done < total else "\n",
              file=sys.stderr, flush=True)
    return report
