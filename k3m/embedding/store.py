"""Item embeddings stored next to a catalog build: ``BUILD/embeddings/<model_id>/``.

Layout (written by ``k3m embed``, read by the query scripts)::

    embeddings.npy   float32 (or float16 on request) [N, E]: the item vectors; row == item
                     index of the build
    item_repr.npy    float32 [N, H]: c*, only where the item vector is wider (a kept path,
                     k3m.model.nn.kept_features); what completion's LPM scores
    ids.parquet      per row: item_id (str), in the build's items order, kept here so the
                     directory is self-describing (checked against the build on open);
                     created (str, UTC ISO: when this row was computed: rows carried over
                     by an incremental embed keep theirs); input_digest (str, null = not
                     comparable: a digest of everything the model read for the item)
    id_hashes.npy    int64 [N]: the ids' stable 64-bit hashes, sorted, and id_order.npy: int64
    id_order.npy     [N] their rows: the id -> row map (``RowOf``), mapped by query commands
    properties.npy   float32 [P, H] property vectors, position == property index (LPM)
    values.npy       float32 [V, H] value vectors, position == value index (LPM)
    meta.json        model_id, checkpoint, weights_sha256, created (UTC ISO), dtype, dim,
                     items, lpm_norm, facts ("train" | "all": which triples the model read),
                     build_manifest_sha256 (the build version embedded), computed and
                     reused (rows), seconds
    ann/             the approximate nearest-neighbour index of the rows (FAISS; large
                     catalogs only, see k3m/embedding/ann_index.py), written with the store
                     and updated incrementally when the store is rewritten

A store whose build_manifest_sha256 is not the build's own was computed for an earlier
version of it (before ``k3m import --update``): it is never served (its removed or changed
items would be), only read by the next ``k3m embed``, which keeps the rows whose input is
unchanged and computes the rest.

The build's own files are never touched. A directory is written into a temporary sibling
and renamed into place when complete, so a half-written one never looks finished. A vector
that is not finite (NaN or inf: a corrupt checkpoint, corrupt input features, a float16
overflow) is never written: :func:`write_store` refuses the whole store, naming the items.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from etl.atomic import writing_directory
from etl.errors import InvalidValue, NotFound, UserError
from etl.string_arrays import OPTIONAL_STRINGS, STRINGS, ParquetStringColumn, RowOf, arrow_strings, parquet_strings
from etl.sync import manifest_sha256
from k3m.embedding.npy_rows import NpyRows

EMBEDDINGS_DIR = "embeddings"
ITEM_REPR = "item_repr.npy"  # c*, beside item vectors that are wider (a kept path)
DTYPES = ("float32", "float16")
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class EmbeddingStoreError(RuntimeError):
    """No (or no matching) embeddings for a build."""


class NonFiniteVectors(UserError):
    """Vectors holding NaN or inf: never stored, never written to the graph."""

    @classmethod
    def of(cls, what: str, names, total: int, where: str) -> "NonFiniteVectors":
        names = [str(n) for n in names]
        shown = ", ".join(repr(n) for n in names[:5]) + (", ..." if len(names) > 5 else "")
        return cls(f"{len(names)} of {total} {what} vectors are not finite (NaN or inf): {shown}; {where}")


def non_finite_rows(matrix: np.ndarray, rows: np.ndarray | None = None, chunk: int = 65536) -> np.ndarray:
    """Positions (in ``rows``, or in the matrix) of the rows holding a NaN or inf; a memory-
    mapped matrix is read in chunks."""
    rows = np.arange(len(matrix)) if rows is None else np.asarray(rows, dtype=np.int64)
    bad = [lo + np.flatnonzero(~np.isfinite(np.asarray(matrix[rows[lo:lo + chunk]], dtype=np.float32)).all(axis=1))
           for lo in range(0, len(rows), chunk)]
    return np.concatenate(bad) if bad else np.zeros(0, dtype=np.int64)


def check_model_id(model_id: str) -> str:
    """Model ids name directories and graph values: a strict pattern, never a path."""
    if not _SAFE_ID.match(model_id or ""):
        raise InvalidValue(f"model id must match {_SAFE_ID.pattern}: {model_id!r}")
    return model_id


@dataclass(frozen=True)
class EmbeddingStore:
    """Read-only view of one model's embeddings of a build; the matrix is memory-mapped."""

    path: Path

    # -- finding -------------------------------------------------------------------------
    @staticmethod
    def root(build_path: str | Path) -> Path:
        return Path(build_path) / EMBEDDINGS_DIR

    @classmethod
    def available(cls, build_path: str | Path) -> list[str]:
        """Model ids with complete embeddings in the build, oldest first."""
        root = cls.root(build_path)
        if not root.is_dir():
            return []
        found = [p for p in root.iterdir() if (p / "meta.json").is_file() and _SAFE_ID.match(p.name)]
        return [p.name for p in sorted(found, key=lambda p: json.loads((p / "meta.json").read_text())["created"])]

    @classmethod
    def open(cls, build_path: str | Path, model_id: str | None = None) -> "EmbeddingStore":
        """The embeddings of ``model_id``, or the newest ones when None; only ones computed
        for the build as it is now."""
        ids = cls.available(build_path)
        if not ids:
            raise EmbeddingStoreError(f"{build_path}: no embeddings; run `k3m embed --checkpoint CKPT {build_path}`")
        if model_id is None:
            model_id = ids[-1]
        elif model_id not in ids:
            raise EmbeddingStoreError(f"{build_path}: no embeddings of model {model_id!r} (have: {', '.join(ids)})")
        store = cls(cls.root(build_path) / model_id)
        if not store.is_current(build_path):
            raise EmbeddingStoreError(
                f"{build_path}: the embeddings of model {model_id!r} were computed for an earlier version of this build "
                f"(it was updated since); run `k3m embed --checkpoint {store.meta.get('checkpoint', 'CKPT')} {build_path}` "
                f"to compute the new and changed items")
        return store

    def is_current(self, build_path: str | Path) -> bool:
        """Computed for the build as it is now (stores older than the check carry no version)."""
        embedded = self.meta.get("build_manifest_sha256")
        return embedded is None or embedded == manifest_sha256(build_path)

    # -- contents ------------------------------------------------------------------------
    @cached_property
    def meta(self) -> dict:
        return json.loads((self.path / "meta.json").read_text())

    @property
    def model_id(self) -> str:
        return self.meta["model_id"]

    @cached_property
    def matrix(self) -> np.ndarray:
        """[N, E] item vectors as stored (float32 or float16), memory-mapped."""
        return np.load(self.path / "embeddings.npy", mmap_mode="r")

    @cached_property
    def item_repr(self) -> np.ndarray:
        """[N, H] c*, what the LPM scores (completion): its own file where the item vector is
        wider (a kept path), else the item vectors themselves. Memory-mapped."""
        path = self.path / ITEM_REPR
        return np.load(path, mmap_mode="r") if path.is_file() else self.matrix

    @cached_property
    def ids(self) -> np.ndarray:
        """StringDType [N]: the item id of each row (numpy strings, not Python objects)."""
        return parquet_strings(self.path / "ids.parquet", "item_id")

    @cached_property
    def id_column(self) -> ParquetStringColumn:
        """The ids, read a row group at a time as rows are asked for (``id_column[rows]``): what
        a one-shot query reads instead of :attr:`ids` (0.3 s at 1M items)."""
        return ParquetStringColumn(self.path / "ids.parquet", "item_id")

    def ids_at(self, rows) -> np.ndarray:
        """StringDType ids of ``rows``: from :attr:`ids` when this store has read them (a
        service), else a row group at a time (:attr:`id_column`, a one-shot query)."""
        return self._ids_or_column()[np.asarray(rows, dtype=np.int64)]

    def _ids_or_column(self):
        return self.__dict__["ids"] if "ids" in self.__dict__ else self.id_column

    def _column(self, name: str) -> np.ndarray | None:
        import pyarrow.parquet as pq

        if name not in pq.ParquetFile(self.path / "ids.parquet").schema_arrow.names:
            return None  # a store written before the column existed
        return parquet_strings(self.path / "ids.parquet", name, optional=True)

    @cached_property
    def created(self) -> np.ndarray:
        """StringDType [N]: when each row was computed (the graph write-back's version of an item)."""
        found = self._column("created")
        return found if found is not None else np.full(len(self.ids), self.meta["created"], dtype=STRINGS)

    @cached_property
    def input_digests(self) -> np.ndarray:
        """StringDType [N]: digest of what the model read for each row (None: unknown)."""
        found = self._column("input_digest")
        return found if found is not None else np.full(len(self.ids), None, dtype=OPTIONAL_STRINGS)

    @cached_property
    def row_index(self) -> RowOf:
        """id -> row by binary search over the sorted ids: many ids at once (``find``),
        memory of two arrays (the batch stages: embed, write-back, completion, and one-shot
        queries). The store's own sorted id hashes are mapped when it has them (written with
        it: a query command at 1M items skips ~0.6 s of hashing every id)."""
        hashes, order = self.path / ID_HASHES, self.path / ID_ORDER
        if hashes.is_file() and order.is_file():
            sorted_hashes, rows = np.load(hashes, mmap_mode="r"), np.load(order, mmap_mode="r")
            ids = self._ids_or_column()
            if len(sorted_hashes) == len(rows) == len(ids):
                return RowOf(ids, stable=True, sorted_hashes=sorted_hashes, order=rows)
        return RowOf(self.ids)

    @cached_property
    def row_of(self) -> dict[str, int]:
        """id -> row as a dict: the fastest single lookups, for long-running processes (the
        query service); about 120 bytes per item, so the batch stages use ``row_index``."""
        return {item_id: row for row, item_id in enumerate(self.ids.tolist())}

    @cached_property
    def property_vectors(self) -> np.ndarray:
        return np.load(self.path / "properties.npy", mmap_mode="r")

    @cached_property
    def value_vectors(self) -> np.ndarray:
        return np.load(self.path / "values.npy", mmap_mode="r")

    def matrix_file(self, name: str = "embeddings.npy"):
        """The item vectors (or ``item_repr.npy``'s c*) read with positioned file I/O
        (:class:`k3m.embedding.npy_rows.NpyRows`): for passes over every row, which a memory
        map would leave resident in the process."""
        from k3m.embedding.npy_rows import NpyRows

        path = self.path / name
        return NpyRows(path if path.is_file() else self.path / "embeddings.npy")

    def resident(self) -> "EmbeddingStore":
        """This store with its matrix read into memory instead of mapped (a long-running
        service: a query item's row is never a page fault on a file the page cache dropped)."""
        self.__dict__["matrix"] = np.load(self.path / "embeddings.npy")  # where cached_property keeps it
        return self

    def ann_index(self, mapped: bool = False):
        """The store's nearest-neighbour index (:class:`k3m.embedding.ann_index.AnnIndex`),
        read into memory (``mapped``: memory-mapped, read-only: a query command opens a large
        index in a millisecond and reads only the pages it searches); None when the store has
        none (small catalogs: exact search)."""
        from k3m.embedding.ann_index import AnnIndex

        return AnnIndex.open(self, mapped=mapped)

    def rows(self, item_ids) -> np.ndarray:
        """Rows of the given ids (NotFound names the first unknown one)."""
        item_ids = item_ids if isinstance(item_ids, np.ndarray) else np.asarray(list(item_ids), dtype=STRINGS)
        rows = self.row_index.find(item_ids)
        if (rows < 0).any():
            raise NotFound(f"item {str(item_ids[int(np.argmax(rows < 0))])!r} has no embedding in {self.path}")
        return rows

    def check_build(self, build) -> None:
        """Fail loudly when the build's items are not the rows these embeddings describe."""
        if len(self.ids) != build.num_items or not np.array_equal(self.ids, parquet_strings(build.path / "items.parquet", "item_id")):
            raise EmbeddingStoreError(f"{self.path} was computed for another item list than {build.path}")
        if not self.is_current(build.path):
            raise EmbeddingStoreError(f"{self.path} was computed for an earlier version of {build.path}; run `k3m embed`")


class StoreWriter:
    """Writes ``BUILD/embeddings/<model_id>/`` a chunk of rows at a time, so memory is bounded
    by the chunk, not the catalog: the matrices are ``.npy`` files in the directory written
    aside, written with positioned file I/O (:class:`NpyRows`: a memory map would keep every
    page written resident in this process), filled by :meth:`write`
    (vectors computed now) and :meth:`copy` (rows of an earlier store, carried over), and
    the rest (ids, per-row times and digests, LPM vectors, meta, the nearest-neighbour
    index) by :meth:`finish`, which then swaps the directory in. A chunk holding a NaN or inf
    (after the cast to the stored dtype: float16 overflows) raises NonFiniteVectors naming
    its items, and nothing is written; so does leaving the block before ``finish``.

        with StoreWriter(build, model_id, ids, dim=E, dtype="float32", repr_dim=H) as writer:
            writer.write(rows, vectors, reprs)       # any order; every row once
            writer.finish(created, digests, props, values, meta)
    """

    WHERE = "nothing was written; the checkpoint's weights or the model's inputs (the feature cache) hold NaN or inf"

    def __init__(self, build_path: str | Path, model_id: str, ids: np.ndarray, dim: int, dtype: str = "float32",
                 repr_dim: int | None = None, index_settings=None):
        check_model_id(model_id)
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
        self.build_path, self.model_id, self.ids = Path(build_path), model_id, ids
        self.dim, self.dtype, self.repr_dim, self.index_settings = int(dim), dtype, repr_dim, index_settings
        self.store: EmbeddingStore | None = None

    def __enter__(self) -> "StoreWriter":
        root = EmbeddingStore.root(self.build_path)
        root.mkdir(exist_ok=True)
        self.final = root / self.model_id
        self.previous = EmbeddingStore(self.final) if (self.final / "meta.json").is_file() else None
        self._directory = writing_directory(self.final)
        self.tmp = self._directory.__enter__()
        rows = len(self.ids)
        self.matrix = NpyRows.create(self.tmp / "embeddings.npy", (rows, self.dim), self.dtype)
        self.reprs = NpyRows.create(self.tmp / ITEM_REPR, (rows, self.repr_dim), np.float32) if self.repr_dim is not None else None
        return self

    def _close(self) -> None:
        for rows in (self.matrix, self.reprs):
            if rows is not None:
                rows.close()
        self.matrix = self.reprs = None

    def __exit__(self, *exc) -> bool:
        self._close()  # closed before the directory is swapped in or removed
        if exc[0] is None and self.store is None:
            exc = (RuntimeError, RuntimeError("StoreWriter left without finish(): nothing written"), None)
            self._directory.__exit__(*exc)
            raise exc[1]
        return bool(self._directory.__exit__(*exc))

    def write(self, rows: np.ndarray, vectors: np.ndarray, reprs: np.ndarray | None = None) -> None:
        """Rows ``rows`` of the store hold ``vectors`` (and c* ``reprs`` where the store keeps it)."""
        rows = np.asarray(rows, np.int64)
        stored = np.asarray(vectors).astype(self.dtype, copy=False)
        bad = non_finite_rows(stored)
        if len(bad):
            raise NonFiniteVectors.of("item", self.ids[rows[bad]], len(self.ids), self.WHERE)
        self.matrix.write(rows, stored)
        if self.reprs is not None:
            if reprs is None:
                raise ValueError("this store keeps c* beside the item vectors: pass reprs")
            self.reprs.write(rows, np.asarray(reprs, np.float32))

    def copy(self, rows: np.ndarray, previous: "EmbeddingStore", old_rows: np.ndarray, chunk: int = 8192) -> None:
        """Rows ``rows`` are ``previous``'s rows ``old_rows`` (an incremental update), copied in chunks."""
        rows, old_rows = np.asarray(rows, np.int64), np.asarray(old_rows, np.int64)
        with previous.matrix_file() as matrix, previous.matrix_file(ITEM_REPR) as item_repr:
            for lo in range(0, len(rows), chunk):
                old = old_rows[lo:lo + chunk]
                # float16 -> 32 -> 16 is exact
                reprs = np.asarray(item_repr.take(old), np.float32) if self.reprs is not None else None
                self.write(rows[lo:lo + chunk], np.asarray(matrix.take(old), np.float32), reprs)

    def finish(self, created: np.ndarray, input_digests: np.ndarray | None, property_vectors: np.ndarray,
               value_vectors: np.ndarray, meta: dict) -> "EmbeddingStore":
        """Write the rest and swap the directory in; returns the store (usable after the block)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        from k3m.embedding.ann_index import AnnSettings, index_for_write, write_files

        for what, vectors in (("property", property_vectors), ("value", value_vectors)):
            bad = non_finite_rows(vectors)
            if len(bad):
                raise NonFiniteVectors.of(what, bad.tolist(), len(vectors), self.WHERE)
        self._close()
        tmp, rows = self.tmp, len(self.ids)
        np.save(tmp / "properties.npy", np.ascontiguousarray(property_vectors, dtype=np.float32))
        np.save(tmp / "values.npy", np.ascontiguousarray(value_vectors, dtype=np.float32))
        schema = pa.schema([("item_id", pa.string()), ("created", pa.string()), ("input_digest", pa.string())])
        digests = input_digests if input_digests is not None else np.full(rows, None, dtype=OPTIONAL_STRINGS)
        with pq.ParquetWriter(tmp / "ids.parquet", schema) as out:
            for lo in range(0, max(rows, 1), PARQUET_ROWS):
                part = slice(lo, lo + PARQUET_ROWS)
                out.write_table(pa.table([arrow_strings(self.ids[part]), arrow_strings(created[part]),
                                          arrow_strings(digests[part])], schema=schema))
        sorted_hashes, order = RowOf(self.ids, stable=True).arrays()  # the id -> row map, mapped by queries
        np.save(tmp / ID_HASHES, sorted_hashes)
        np.save(tmp / ID_ORDER, order)
        full_meta = {**meta, "model_id": self.model_id, "dtype": self.dtype, "dim": self.dim, "items": int(rows)}
        (tmp / "meta.json").write_text(json.dumps(full_meta, indent=2) + "\n")
        with NpyRows(tmp / "embeddings.npy") as matrix:
            ann = index_for_write(self.previous, matrix, self.ids, created, full_meta, self.index_settings or AnnSettings())
        if ann is not None:
            (tmp / "ann").mkdir()
            write_files(ann, tmp / "ann")
        self.store = EmbeddingStore(self.final)
        return self.store


ID_HASHES, ID_ORDER = "id_hashes.npy", "id_order.npy"  # RowOf's sorted stable hashes of the ids, and their rows
PARQUET_ROWS = 65536  # rows per row group of ids.parquet (what is converted to Arrow at once)


def write_store(
    build_path: str | Path,
    model_id: str,
    ids: np.ndarray,
    embeddings: np.ndarray,
    property_vectors: np.ndarray,
    value_vectors: np.ndarray,
    meta: dict,
    dtype: str = "float32",
    created: np.ndarray | None = None,
    input_digests: np.ndarray | None = None,
    index_settings=None,
    item_repr: np.ndarray | None = None,
    chunk: int = 65536,
) -> EmbeddingStore:
    """Write (or replace) ``BUILD/embeddings/<model_id>/`` atomically from whole arrays (a
    :class:`StoreWriter` fed in chunks). ``created`` per row defaults to ``meta["created"]``;
    ``item_repr``: c* where the item vector is wider (a kept path), what the LPM scores.

    The nearest-neighbour index is written in the same directory: the replaced store's index
    updated for the rows that changed (k3m.embedding.ann_index), else a new one when the
    catalog is large enough for one (``index_settings``: an ``AnnSettings``, default auto)."""
    ids = ids if isinstance(ids, np.ndarray) and ids.dtype == STRINGS else np.asarray([str(i) for i in ids], dtype=STRINGS)
    if len(ids) != len(embeddings):
        raise ValueError(f"{len(ids)} ids for {len(embeddings)} embedding rows")
    created = (np.full(len(ids), meta["created"], dtype=STRINGS) if created is None
               else np.asarray(created, dtype=STRINGS))
    digests = None if input_digests is None else np.asarray(input_digests, dtype=OPTIONAL_STRINGS)
    repr_dim = None if item_repr is None else int(item_repr.shape[1])
    with StoreWriter(build_path, model_id, ids, int(embeddings.shape[1]), dtype, repr_dim, index_settings) as writer:
        for lo in range(0, len(ids), chunk):
            rows = np.arange(lo, min(lo + chunk, len(ids)))
            writer.write(rows, embeddings[lo:lo + chunk], None if item_repr is None else item_repr[lo:lo + chunk])
        return writer.finish(created, digests, property_vectors, value_vectors, meta)
