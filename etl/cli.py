"""``k3m import``: catalog files + mapping -> catalog build (a thin wrapper over import_catalog)."""
from __future__ import annotations

import argparse
import sys


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "import",
        help="import catalog files into a catalog build",
        description="Read catalog files (TSV, CSV, JSON Lines, Parquet; gzip ok) through a mapping "
        "and write a catalog build: items, triples, vocabularies, image store, splits, "
        "summary.json and rejects.jsonl. See docs/etl.md.",
    )
    p.add_argument("sources", nargs="+", metavar="SOURCE", help="catalog file(s), read in order")
    p.add_argument("--mapping", required=True, metavar="NAME_OR_FILE",
                   help="built-in mapping (k3m-tsv, fashion44k) or a YAML mapping file")
    p.add_argument("--out", required=True, metavar="BUILD_DIR", help="catalog build directory (replaced when complete)")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="read only the first N rows")
    p.add_argument("--image-size", type=int, default=64, metavar="PX", help="square image side in the store (default 64)")
    p.add_argument("--seed", type=int, default=0, help="seed of the item and triple splits (default 0)")
    p.add_argument("--strict", action="store_true", help="fail on the first rejected row")
    p.add_argument("--images", default=None, metavar="ZIP_OR_DIR", help="image root overriding the mapping's")
    p.add_argument("--workers", type=int, default=2, help="image-decoding processes, 0 = none (default 2)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from etl.build import ImportFailed, import_catalog
    from etl.mapping import MappingError
    from etl.readers import SourceError
    from etl.report import StrictImportError

    try:
        summary = import_catalog(
            args.sources, args.mapping, args.out, limit=args.limit, image_size=args.image_size,
            seed=args.seed, strict=args.strict, images=args.images, workers=args.workers,
        )
    except (MappingError, SourceError, StrictImportError, ImportFailed, ValueError) as exc:
        print(f"k3m import: error: {exc}", file=sys.stderr)
        return 1
    images = summary["images"]
    print(
        f"k3m import: {summary['items']} items, {summary['triples']} triples over {summary['properties']} properties, "
        f"images ok {images['ok']} / missing {images['missing']} / bad {images['bad']} / refused {images['refused']} "
        f"in {summary['seconds']:.1f}s -> {args.out}"
    )
    if summary["rejected_rows"]:
        reasons = ", ".join(f"{k}={v}" for k, v in summary["rejected"].items())
        print(f"k3m import: warning: {summary['rejected_rows']} of {summary['rows_read']} rows rejected ({reasons}); "
              f"see {args.out}/rejects.jsonl", file=sys.stderr)
    return 0
