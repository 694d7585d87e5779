"""``import_catalog``: catalog files + mapping -> a catalog build (format: etl/catalog_build.py).

One streaming pass: rows are read, mapped, checked and interned; each item's image is
located (safely) under its image root, then read and decoded in batches (by a small process
pool for large catalogs) straight into the image store file. Vocabularies are sorted and
triples remapped at the end, splits are drawn from seeded hashes, and the finished
directory is renamed onto ``out``.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import time
from array import array
from collections import Counter, deque
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from importlib import metadata
from multiprocessing import get_context
from pathlib import Path
from typing import Iterable

import numpy as np

from etl.catalog_build import FORMAT_VERSION, SPLITS, BuildError, CatalogBuild
from etl.errors import InvalidValue, UserError
from etl.extract import Extractor, RowRejected
from etl.image_store import ImageStoreWriter, decode_into_store
from etl.image_size import SAMPLE, ImageSizeChoice, choose_image_size, photo_side
from etl.images import NO_IMAGE, OUTCOMES, ImageLimits, ImageRoot, Located, open_root
from etl.leakage import label_leakage
from etl.mapping import Mapping, load_mapping
from etl.readers import read_rows
from etl.report import ImportReport
from etl.splits import SplitSettings, item_splits, string_hashes, triple_splits
from etl.sync import (build_diff, carry_over, grown_vocabulary, mapping_differences, mapping_digest, review_removals,
                      write_sync)
from etl.atomic import directory_lock, writing_directory
from etl.worker_lifetime import die_with_parent

PACKAGES = ("k3m-pkg", "numpy", "pyarrow", "Pillow", "PyYAML")
# spawn and forkserver re-import the caller's __main__, which breaks scripts without a main
# guard and scripts read from stdin; the workers only use Pillow, numpy, zipfile and os, so a
# plain fork is safe where it exists.
START_METHOD = "fork" if sys.platform == "linux" else "spawn"


class ImportFailed(UserError, RuntimeError):
    """The import cannot run (bad output directory, missing source or image root) or gives
    no items at all."""


class UpdateRefused(ImportFailed):
    """An update would lose items silently or change them by another mapping; the build is
    left as it was (etl/sync.py says when)."""


@dataclass(frozen=True)
class ImportSettings:
    limit: int | None = None  # read only the first N rows (over all sources)
    image_size: int | None = None  # stored square size in px; None: from the photos (etl.image_size)
    seed: int = 0
    strict: bool = False  # any rejected row aborts the import
    images: str | None = None  # image root (zip or directory) overriding the mapping's
    workers: int = 2  # image-decoding processes; 0 decodes in this process
    image_batch: int = 1024  # images per decoding task
    image_limits: ImageLimits = field(default_factory=ImageLimits)  # bytes and pixels per image
    split: SplitSettings = field(default_factory=SplitSettings)
    # an update only (etl/sync.py): apply one that removes items by rejected rows or more
    # than MAX_REMOVED_FRACTION of them, or one with another mapping than the build's
    allow_removals: bool = False
    mapping_changed: bool = False

    def __post_init__(self):
        if self.limit is not None and self.limit < 1:
            raise InvalidValue(f"limit must be >= 1, got {self.limit}")
        if self.image_size is not None and not 8 <= self.image_size <= 1024:
            raise InvalidValue(f"image_size must be within 8..1024, got {self.image_size}")
        if self.workers < 0 or self.image_batch < 1:
            raise InvalidValue("workers must be >= 0 and image_batch >= 1")


def import_catalog(
    sources: Iterable[str | Path],
    mapping: str | Path | Mapping,
    out: str | Path,
    *,
    limit: int | None = None,
    image_size: int | None = None,
    seed: int = 0,
    strict: bool = False,
    update: bool = False,
    **settings,
) -> dict:
    """Import ``sources`` with ``mapping`` (a built-in name, a YAML file or a Mapping) into the
    catalog build ``out``; returns the summary (also written to ``out/summary.json``).

    ``update``: ``out`` is an existing build of an earlier version of the catalog, replaced by
    this one with its ids kept valid (vocabularies only grow, items keep their split, unchanged
    images are copied, not decoded), the diff written to ``out/sync.json`` (:mod:`etl.sync`)
    and what later stages wrote into it (embeddings, graph.json) carried over. The previous
    build's image size, seed and split fractions are used.

    Further keyword arguments are :class:`ImportSettings` fields (``images``, ``workers``, ``split``).
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ImportFailed(f"{out}: is a file; --out names the build directory to write")
    if out.exists() and not (out / "manifest.json").is_file() and any(out.iterdir()):
        raise ImportFailed(f"{out}: exists and is not a catalog build; refusing to replace it")
    for parent in out.parents:  # a file where a parent directory should be
        if parent.exists():
            if not parent.is_dir():
                raise ImportFailed(f"{parent}: is a file, so {out} cannot be created")
            break
    # one import or update of a build at a time: an update reads the build it replaces
    with directory_lock(out, "import or sync"):
        return _import_catalog(sources, mapping, out, limit=limit, image_size=image_size, seed=seed, strict=strict,
                               update=update, **settings)


def _import_catalog(sources, mapping, out, *, limit, image_size, seed, strict, update, **settings) -> dict:
    previous = None
    if update:
        try:
            previous = CatalogBuild.open(out)
        except BuildError as exc:
            raise ImportFailed(f"--update: {exc}") from None
        image_size, seed = previous.manifest["image_size"], previous.manifest["seed"]
        settings["split"] = SplitSettings(**previous.manifest["split_fractions"])
    settings = ImportSettings(limit=limit, image_size=image_size, seed=seed, strict=strict, **settings)
    mapping = mapping if isinstance(mapping, Mapping) else load_mapping(mapping)
    if previous is not None and "mapping" in previous.manifest:
        changed = mapping_differences(previous.manifest["mapping"], mapping.to_dict())
        if changed and not settings.mapping_changed:
            raise UpdateRefused(
                f"--update {out} refused (the build is unchanged): the mapping {mapping.origin} differs from the one "
                f"the build was imported with ({previous.manifest['mapping'].get('origin')}) in {', '.join(changed)}: "
                f"items would change by the mapping, not by the catalog; pass --mapping-changed to apply it")
    sources = [Path(s) for s in sources]
    if not sources:
        raise ImportFailed("no source files given")
    for source in sources:
        if not source.is_file():
            raise ImportFailed(f"{source}: no such source file")
    # at no moment does ``out`` hold a partial build; killed imports' leftovers go first; a
    # symbolic link is written through (the build replaced is the one it points at)
    with writing_directory(out) as partial:
        summary = _Import(sources, mapping, partial, settings, previous).run()
    return summary


class _Import:
    def __init__(self, sources: list[Path], mapping: Mapping, work: Path, settings: ImportSettings,
                 previous: CatalogBuild | None = None):
        self.sources = sources
        self.previous = previous
        # an update copies an unchanged image's pixels: id -> (previous row, file digest)
        self.reusable: dict[str, tuple[int, str]] = {}
        if previous is not None and "image_digest" in previous.items:
            old = previous.items
            for row, (item_id, status, digest) in enumerate(zip(old["item_id"], old["image_status"], old["image_digest"])):
                if status == "ok" and isinstance(digest, str):
                    self.reusable[item_id] = (row, digest)
        self.mapping = mapping
        self.work = work
        self.settings = settings
        self.report = ImportReport(work / "rejects.jsonl", strict=settings.strict)
        self.extract = Extractor(mapping, self.report.dropped_values)
        # items, in read order
        self.item_ids: list[str] = []
        self.titles: list[str | None] = []
        self.categories: list[str | None] = []
        self.groups: list[str | None] = []
        self.image_status: list[str] = []
        self.image_digest: list[str | None] = []
        self.index_of: dict[str, int] = {}  # item id -> item index, to refuse duplicates
        self.item_line = array("q")  # where each item was read, for duplicate reports
        self.item_source = array("I")
        self.category_names: dict[str, str] = {}  # one string object per category
        # triples with provisional (first-seen) vocabulary ids
        self.property_ids: dict[str, int] = {}
        self.value_ids: dict[str, int] = {}
        self.t_item, self.t_property, self.t_value = array("i"), array("i"), array("i")
        self.roots: dict[Path | None, ImageRoot] = {}
        self.rows_per_source: list[int] = []

    # -- the pass over the rows -----------------------------------------------------------
    def run(self) -> dict:
        started = time.perf_counter()
        self.image_size, self.image_size_choice = self.settings.image_size, None
        if self.image_size is None:
            self.image_size_choice = self._choose_image_size()
            self.image_size = self.image_size_choice.size
        store = ImageStoreWriter(self.work / "images.npy", self.image_size)
        previous_images = self.previous.path / "images.npy" if self.reusable else None
        images = _ImagePipeline(store, self.settings, self._image_decoded, previous_images)
        try:
            self._read_all(images)
            store.finish(images.finish())
        except BaseException:
            images.abort()
            raise
        finally:
            self.report.close()
            for root in self.roots.values():
                root.close()
        if not self.item_ids:
            raise ImportFailed(self._why_no_items())
        return self._write(started)

    def _choose_image_size(self) -> ImageSizeChoice:
        """The stored size from the headers of the first photos the catalog references
        (etl.image_size); a pass over the first rows that reads only what it needs."""
        sides, tries = [], 0
        counts: Counter = Counter()
        for source in self.sources:
            root = self._root(source)
            for row in read_rows(source, self.mapping, counts):
                if len(sides) >= SAMPLE or tries >= 4 * SAMPLE:
                    return choose_image_size(sides)
                if row.record is None:
                    continue
                try:
                    ref = Extractor(self.mapping, Counter())(row.record).image_ref
                except RowRejected:
                    continue
                located = root.locate(ref)
                if located.status != "found":
                    continue
                tries += 1
                side = photo_side(located.source, self.settings.image_limits.max_bytes)
                if side is not None:
                    sides.append(side)
        return choose_image_size(sides)

    def _why_no_items(self) -> str:
        report = self.report
        names = ", ".join(map(str, self.sources))
        if report.rows_read == 0:
            return f"no items: {names} {'holds' if len(self.sources) == 1 else 'hold'} no data rows (empty, or a header only)"
        reasons = ", ".join(f"{k}={v}" for k, v in sorted(report.rejected.items()))
        first = report.first_reject or {}
        return (f"no items: all {report.rows_read} rows were rejected ({reasons}); the first, "
                f"{first.get('source')}:{first.get('line')}: {first.get('reason')}: {first.get('detail')}")

    def _read_all(self, images: "_ImagePipeline") -> None:
        limit = self.settings.limit
        report = self.report
        for source_index, source in enumerate(self.sources):
            root = self._root(source)
            self.rows_per_source.append(0)
            for row in read_rows(source, self.mapping, report.reader_counts):
                if limit is not None and report.rows_read >= limit:
                    return
                report.rows_read += 1
                self.rows_per_source[-1] += 1
                if row.record is None:
                    report.reject(row, row.reason, row.detail, self.extract.id_of(row.salvaged))
                    continue
                try:
                    item = self.extract(row.record)
                except RowRejected as exc:
                    report.reject(row, exc.reason, exc.detail, self.extract.id_of(row.record))
                    continue
                first = self.index_of.get(item.item_id)
                if first is not None:
                    where = f"{self.sources[self.item_source[first]]}:{self.item_line[first]}"
                    report.reject(row, "duplicate_id", f"id {item.item_id!r} already read at {where}", item.item_id)
                    continue
                self._add(item, source_index, row.line)
                located = root.locate(item.image_ref)
                if item.image_reason is not None:  # a template field this row lacks
                    located = Located("missing", item.image_reason)
                self.image_digest.append(None)
                if located.status == "found":
                    self.image_status.append("pending")
                    images.add(located.source, self.reusable.get(item.item_id))
                else:
                    self.image_status.append(located.status)
                    report.image(located.status, located.reason)
                    images.add(None)

    def _add(self, item, source_index: int, line: int) -> None:
        index = len(self.item_ids)
        self.index_of[item.item_id] = index
        self.item_source.append(source_index)
        self.item_line.append(line)
        self.item_ids.append(item.item_id)
        self.titles.append(item.title)
        category = item.category
        self.categories.append(category if category is None else self.category_names.setdefault(category, category))
        self.groups.append(item.group)
        self.report.items += 1
        self.report.titles_missing += item.title is None
        for prop, value in item.pairs:
            self.t_item.append(index)
            self.t_property.append(self.property_ids.setdefault(prop, len(self.property_ids)))
            self.t_value.append(self.value_ids.setdefault(value, len(self.value_ids)))

    def _image_decoded(self, start: int, decoded: tuple[np.ndarray, list[str | None]]) -> None:
        statuses, digests = decoded
        self.image_digest[start:start + len(digests)] = digests
        for offset in np.flatnonzero(statuses != NO_IMAGE):
            status, reason = OUTCOMES[int(statuses[offset])]
            self.image_status[start + offset] = status
            self.report.image(status, reason)

    def _root(self, source: Path) -> ImageRoot:
        spec = self.mapping.image
        if self.settings.images is not None:
            path = Path(self.settings.images)
        elif spec is not None and (spec.archive or spec.dir):
            path = source.parent / (spec.archive or spec.dir)
        else:
            path = None
        if path not in self.roots:
            try:
                self.roots[path] = open_root(path, self.settings.image_limits)
            except FileNotFoundError as exc:
                raise ImportFailed(str(exc)) from None
        return self.roots[path]

    # -- writing the build ----------------------------------------------------------------
    def _write(self, started: float) -> dict:
        import pyarrow as pa
        import pyarrow.parquet as pq

        previous = self.previous  # an update: its vocabularies first, in their order
        properties, property_remap = grown_vocabulary(previous.properties if previous else [], self.property_ids)
        values, value_remap = grown_vocabulary(previous.values if previous else [], self.value_ids)
        triples = np.stack([
            np.frombuffer(self.t_item, dtype=np.int32),
            property_remap[np.frombuffer(self.t_property, dtype=np.int32)],
            value_remap[np.frombuffer(self.t_value, dtype=np.int32)],
        ], axis=1).astype(np.int32).reshape(-1, 3)
        triples = triples[np.lexsort((triples[:, 2], triples[:, 1], triples[:, 0]))]

        used = {c: i for i, c in enumerate(dict.fromkeys(c for c in self.categories if c is not None))}
        categories = grown_vocabulary(previous.categories if previous else [], used)[0]
        category_index = {c: i for i, c in enumerate(categories)}
        item_category = np.array([category_index.get(c, -1) if c is not None else -1 for c in self.categories], np.int64)
        split_keys = [f"g:{g}" if g is not None else f"i:{i}" for g, i in zip(self.groups, self.item_ids)]
        item_split = item_splits(split_keys, self.settings.seed, self.settings.split)
        if previous is not None:  # an item keeps its split whatever its group became
            old_split = dict(zip(previous.items["item_id"], previous.items["split"].map(SPLITS.index)))
            item_split = np.array([old_split.get(i, s) for i, s in zip(self.item_ids, item_split.tolist())], np.int8)
        seed = self.settings.seed
        triple_split = triple_splits(
            triples, string_hashes(self.item_ids, seed), string_hashes(properties, seed),
            string_hashes(values, seed), self.settings.split,
        )

        table = pa.table({
            "item_id": pa.array(self.item_ids, pa.string()),
            "title": pa.array(self.titles, pa.string()),
            "category": pa.array(self.categories, pa.string()),
            "category_index": pa.array(item_category, pa.int32()),
            "group": pa.array(self.groups, pa.string()),
            "split": pa.array(np.array(SPLITS)[item_split], pa.string()),
            "has_image": pa.array([s == "ok" for s in self.image_status], pa.bool_()),
            "image_status": pa.array(self.image_status, pa.string()),
            "image_digest": pa.array(self.image_digest, pa.string()),
        })
        pq.write_table(table, self.work / "items.parquet")
        for name, vocabulary in (("properties", properties), ("values", values), ("categories", categories)):
            (self.work / f"{name}.json").write_text(json.dumps(vocabulary, ensure_ascii=False), encoding="utf-8")
        np.save(self.work / "triples.npy", triples)
        np.save(self.work / "triple_split.npy", triple_split)

        counts = {
            "items": len(self.item_ids),
            "triples": int(len(triples)),
            "properties": len(properties),
            "values": len(values),
            "pairs": int(len(np.unique(triples[:, 1].astype(np.int64) * max(len(values), 1) + triples[:, 2]))),
            "categories": len(categories),
            "images": int(sum(s == "ok" for s in self.image_status)),
        }
        splits = {name: int((item_split == k).sum()) for k, name in enumerate(SPLITS)}
        held_out = {name: int((triple_split == k).sum()) for k, name in enumerate(SPLITS)}
        self._write_json("manifest.json", self._manifest(counts, splits, held_out))
        summary = self.report.summary(
            **{k: counts[k] for k in ("triples", "properties", "values", "pairs", "categories")},
            splits=splits, triple_splits=held_out,
            # archive members whose names could escape the root: never served, counted here
            unsafe_archive_members=sum(root.unsafe_members for root in self.roots.values()),
            empty_sources=[str(s) for s, n in zip(self.sources, self.rows_per_source) if n == 0],
            label_leakage=label_leakage(item_category, item_split, triples, properties, categories,
                                        reviewed=self.mapping.not_leakage),
        )
        if previous is not None:
            diff = build_diff(previous, CatalogBuild(self.work))
            review = review_removals(previous.num_items, diff, self.report.rejected_ids, self.report.rejected_without_id,
                                     self.report.rejected["duplicate_id"], self.settings.allow_removals)
            if review["refusal"] is not None:
                raise UpdateRefused(f"--update {previous.path} refused (the build is unchanged): {review['refusal']}; "
                                    f"fix the source, or pass --allow-removals to remove them")
            changed_mapping = mapping_differences(previous.manifest.get("mapping", {}), self.mapping.to_dict())
            warnings = review["warnings"] + ([f"the mapping differs from the build's in {', '.join(changed_mapping)}: "
                                              f"applied (--mapping-changed)"] if changed_mapping else [])
            write_sync(self.work, {**diff, "removed_by_rejects": review["removed_by_rejects_ids"],
                                   "seconds": round(time.perf_counter() - started, 3)})
            summary["update"] = {**diff["counts"], "changed_fields": diff["changed_fields"],
                                 "rejected_rows": self.report.rejected_rows(), "rejected": dict(sorted(self.report.rejected.items())),
                                 "removed_by_rejects": review["removed_by_rejects"], "mapping_changed": changed_mapping,
                                 "warnings": warnings, "carried_over": carry_over(previous.path, self.work)}
        summary["seconds"] = round(time.perf_counter() - started, 3)
        self._write_json("summary.json", summary)
        return summary

    def _manifest(self, counts: dict, splits: dict, held_out: dict) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "sources": [_file_entry(s) for s in self.sources],
            "image_roots": [
                {"root": root.description, "unsafe_members": root.unsafe_members,
                 **(_file_entry(path) if path is not None and path.is_file() else {})}
                for path, root in self.roots.items()
            ],
            "mapping": self.mapping.to_dict(),
            "mapping_digest": mapping_digest(self.mapping.to_dict()),
            "counts": counts,
            "image_size": self.image_size,
            **({"image_size_choice": self.image_size_choice.as_dict()} if self.image_size_choice else {}),
            "seed": self.settings.seed,
            "limit": self.settings.limit,
            "split_fractions": asdict(self.settings.split),
            "splits": splits,
            "triple_splits": held_out,
            "packages": {"python": platform.python_version(), **{p: _version(p) for p in PACKAGES}},
        }

    def _write_json(self, name: str, data: dict) -> None:
        (self.work / name).write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


class _ImagePipeline:
    """Reads and decodes images into the store in batches, in worker processes for large catalogs.

    Every item gets a row (None = no image). The first batch decodes in this process
    so small imports never pay for starting workers.
    """

    def __init__(self, store: ImageStoreWriter, settings: ImportSettings, on_decoded, previous: Path | None = None):
        self.store = store
        self.previous = previous  # an earlier build's images.npy, to copy unchanged images from
        self.workers = settings.workers
        self.batch_size = settings.image_batch
        self.limits = settings.image_limits
        self.on_decoded = on_decoded
        self.batch: list[tuple[str, str, str] | None] = []
        self.reuse: list[tuple[int, str] | None] = []
        self.rows = 0  # rows handed out so far == item index of the current batch's first row
        self.pending: deque[tuple[int, Future | np.ndarray]] = deque()
        self.pool: ProcessPoolExecutor | None = None

    def add(self, source: tuple[str, str, str] | None, reuse: tuple[int, str] | None = None) -> None:
        self.batch.append(source)
        self.reuse.append(reuse)
        if len(self.batch) >= self.batch_size:
            self._submit()

    def _submit(self) -> None:
        if not self.batch:
            return
        reuse = self.reuse if self.previous is not None and any(self.reuse) else None
        job = (self.store.path, self.store.size, self.rows, self.batch, self.limits, reuse, self.previous if reuse else None)
        if self.workers and self.rows and self.pool is None:
            self.pool = ProcessPoolExecutor(self.workers, mp_context=get_context(START_METHOD),
                                            initializer=die_with_parent, initargs=(os.getpid(),))
        result = self.pool.submit(decode_into_store, job) if self.pool else decode_into_store(job)
        self.pending.append((self.rows, result))
        self.rows += len(self.batch)
        self.batch, self.reuse = [], []
        while len(self.pending) > 2 * max(self.workers, 1):  # bounds the work queued ahead
            self._drain_one()

    def _drain_one(self) -> None:
        start, result = self.pending.popleft()
        self.on_decoded(start, result.result() if isinstance(result, Future) else result)

    def finish(self) -> int:
        """Waits for every batch; returns the number of rows."""
        self._submit()
        while self.pending:
            self._drain_one()
        if self.pool is not None:
            self.pool.shutdown()
        return self.rows

    def abort(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)


def _file_entry(path: Path) -> dict:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return {"path": str(path), "bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None
