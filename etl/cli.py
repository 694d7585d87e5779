"""``k3m import``: catalog files + mapping -> catalog build (a thin wrapper over import_catalog).

Errors (a bad mapping, an unreadable source, a bad --out, --strict rejects, no items at all,
an update that would lose items or change them by another mapping) are raised and reported
once by ``k3m/cli.py`` (exit 2); warnings about what was imported go to stderr after the
short result (``--json``: the whole summary, which is also ``BUILD/summary.json``).
"""
from __future__ import annotations

import argparse
import json
import sys

MB = 2**20


def add_parser(subparsers) -> None:
    from etl.images import ImageLimits

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
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--out", metavar="BUILD_DIR", help="catalog build directory (replaced when complete)")
    target.add_argument("--update", metavar="BUILD_DIR",
                        help="an existing build of an earlier version of the catalog: replace it keeping its ids "
                             "valid, and write the diff to BUILD_DIR/sync.json (then `k3m kg load BUILD_DIR` and "
                             "`k3m embed` apply only the change; `k3m sync` runs all three)")
    p.add_argument("--allow-removals", action="store_true",
                   help="--update: apply it even when rejected rows of the new version remove items, or more than "
                        "10%% of the items go (refused otherwise; see docs/etl.md)")
    p.add_argument("--mapping-changed", action="store_true",
                   help="--update: apply it with another mapping than the build was imported with (refused otherwise)")
    p.add_argument("--json", action="store_true", help="print the whole summary (summary.json) as JSON")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="read only the first N rows")
    p.add_argument("--image-size", type=_image_size, default=None, metavar="PX|auto",
                   help="square image side in the store (default auto: the median longest side of the catalog's "
                        "photos, rounded up to a multiple of 32, within 64..224; an update keeps the build's)")
    p.add_argument("--seed", type=int, default=None, help="seed of the item and triple splits (default 0; an update keeps the build's)")
    p.add_argument("--strict", action="store_true", help="fail on the first rejected row")
    p.add_argument("--images", default=None, metavar="ZIP_OR_DIR", help="image root overriding the mapping's")
    p.add_argument("--workers", type=int, default=2, help="image-decoding processes, 0 = none (default 2)")
    p.add_argument("--image-max-mb", type=float, default=ImageLimits.max_bytes / MB, metavar="MB",
                   help=f"refuse an image file or zip member larger than this, stored or uncompressed "
                        f"(default {ImageLimits.max_bytes // MB})")
    p.add_argument("--image-max-megapixels", type=float, default=ImageLimits.max_pixels / 1e6, metavar="MP",
                   help=f"refuse an image that would decode to more pixels (default {ImageLimits.max_pixels / 1e6:g})")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from etl.build import import_catalog
    from etl.images import ImageLimits

    from etl.build import ImportFailed

    update = args.update is not None
    out = args.update if update else args.out
    if update and (args.image_size is not None or args.seed is not None):
        raise ImportFailed("--update keeps the build's image size and seed; drop --image-size / --seed "
                           "(or import into a new build with --out)")
    if not update and (args.allow_removals or args.mapping_changed):
        raise ImportFailed("--allow-removals and --mapping-changed apply to --update only")
    limits = ImageLimits(max_bytes=int(args.image_max_mb * MB), max_pixels=int(args.image_max_megapixels * 1e6))
    summary = import_catalog(
        args.sources, args.mapping, out, limit=args.limit, image_size=args.image_size,
        seed=args.seed or 0, strict=args.strict, images=args.images, workers=args.workers, image_limits=limits,
        update=update, allow_removals=args.allow_removals, mapping_changed=args.mapping_changed,
    )
    if args.json:
        print(json.dumps(summary, ensure_ascii=False, indent=1))
    else:
        print(summary_line(summary, out))
    for line in warnings(summary, out):
        print(f"k3m import: warning: {line}", file=sys.stderr)
    return 0


def summary_line(summary: dict, out: str) -> str:
    images = summary["images"]
    line = (f"k3m import: {summary['items']} items, {summary['triples']} triples over {summary['properties']} properties, "
            f"images ok {images['ok']} / missing {images['missing']} / bad {images['bad']} / refused {images['refused']} "
            f"in {summary['seconds']:.1f}s -> {out}")
    if "update" in summary:
        u = summary["update"]
        line += (f"\nk3m import: update: {u['added']} added, {u['changed']} changed, {u['removed']} removed, "
                 f"{u['unchanged']} unchanged (diff in {out}/sync.json)")
    return line


def warnings(summary: dict, out: str) -> list[str]:
    """What the user should look at in a finished import, one line each."""
    lines = []
    if summary["rejected_rows"]:
        reasons = ", ".join(f"{k}={v}" for k, v in summary["rejected"].items())
        lines.append(f"{summary['rejected_rows']} of {summary['rows_read']} rows rejected ({reasons}); "
                     f"see {out}/rejects.jsonl")
    for source in summary.get("empty_sources", []):
        lines.append(f"{source} holds no data rows (empty, or a header only)")
    images = summary["images"]
    if images["ok"] == 0 and images["missing"] + images["bad"] + images["refused"] and any(
            not reason.startswith(("missing:no_image_reference", "missing:remote_url", "missing:no_image_root"))
            for reason in summary["image_reasons"]):
        reasons = ", ".join(f"{k}={v}" for k, v in summary["image_reasons"].items())
        lines.append(f"no image could be used ({reasons}); check the mapping's image section or --images")
    lines += summary.get("update", {}).get("warnings", [])
    leakage = summary.get("label_leakage") or {}
    scores = {p["property"]: p for p in leakage.get("properties", [])}
    for name in leakage.get("suspects", []):
        p = scores[name]
        lines.append(
            f"property {name!r} alone predicts the category of {100 * p['accuracy']:.0f}% of held-out items "
            f"(always guessing the most frequent category: {100 * leakage['baseline']:.0f}%): if it restates "
            f"the label, add it to the mapping's exclude: list; if it is a real attribute, to not_leakage:")
    return lines


def _image_size(text: str) -> int | None:
    """--image-size: ``auto`` (None: chosen from the photos) or pixels."""
    if text == "auto":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of pixels or auto, got {text!r}") from None
