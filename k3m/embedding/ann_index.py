"""Approximate nearest neighbours over an embedding store: a FAISS index kept beside it.

``BUILD/embeddings/<model_id>/ann/``::

    index.faiss   FAISS index over the store's rows, L2-normalised (inner product = cosine)
    labels.npy    int64 [L]: the store row each FAISS label stands for; -1 = removed
    meta.json     kind, parameters, live and dead labels, the store version it describes
                  (model_id, created, rows, dim), the faiss version, the last update

Kinds, chosen by catalog size when ``kind="auto"`` (the choice then stays with the store):

``exact``  fewer than ``exact_below`` rows (of 128 floats: wider rows count for more): no
           index; numpy's exact search (the reference, k3m.query.vector_search.ExactIndex)
           takes about a millisecond at 44k x 128, ~25 ms at 44k x 1,408.
``hnsw``   up to ``ivf_from`` rows: ``IndexHNSWFlat`` (M links per node). FAISS's HNSW
           cannot delete: a removed or changed item's label becomes a tombstone (its row is
           -1, searches skip it through an ``IDSelectorBitmap`` of the live labels), and the
           index is rebuilt once tombstones exceed ``rebuild_dead_fraction`` of the labels.
``ivf``    from ``ivf_from`` rows: ``IndexIVFFlat`` with ~4 sqrt(N) lists, trained on a
           sample; removals are real (``remove_ids``), additions go to the trained lists
           (``add_with_ids``); retrained once the catalog outgrows its training ``regrow``
           times.

Updates are incremental. :func:`update_index` compares the labels' (item id, created) with
the new store's rows: an item whose row was carried over by an incremental ``k3m embed``
keeps its label and vector; removed and recomputed items lose theirs, new and recomputed
rows are added. :func:`k3m.embedding.store.write_store` runs it inside the store's atomic
write, so a store and its index are always the same version.

Filtered search (graph constraints): the candidate rows become an ``IDSelectorBitmap``
passed in the search parameters (``sel``), so only candidates can be returned. Candidates
under ``scan_share`` of the catalog are scanned on the index's own codes (HNSW's flat
storage, or all IVF lists: the bitmap is tested before a code is decoded); more go through
the graph or the probed lists, widening (efSearch or nprobe x4) up to a bound when that
yields fewer than k hits. Never everything.
"""
from __future__ import annotations

import json
import math
import shutil
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from etl.errors import InvalidValue

ANN_DIR = "ann"
KINDS = ("auto", "exact", "hnsw", "ivf")
CODECS = ("auto", "flat", "sq8")


class AnnIndexError(RuntimeError):
    """The index cannot be built or read as asked."""

    exit_code = 2


@dataclass(frozen=True)
class AnnSettings:
    kind: str = "auto"  # auto | exact | hnsw | ivf
    exact_below: int = 50_000  # auto: fewer rows than this get no index (exact search)
    # auto: this many rows or more get IVF instead of HNSW: IVF builds ~10x faster on a
    # few cores (k-means on a sample, then one assignment per row), removes for real, and
    # scans whole lists, so graph constraints cost it no recall
    ivf_from: int = 500_000
    hnsw_m: int = 32  # links per node (memory: ~2 x M x 4 bytes per row beside the vector)
    hnsw_ef_construction: int = 40  # FAISS's default: building costs ~linearly in it
    hnsw_ef_search: int = 64  # candidates kept while searching: recall against speed
    rebuild_dead_fraction: float = 0.2  # hnsw: rebuild when this share of labels are tombstones
    ivf_lists_per_sqrt: float = 4.0  # ivf: lists = this x sqrt(rows), the FAISS guideline's low end
    ivf_nprobe: int = 16  # lists scanned per query (1M rows, 2,444 lists: recall@10 0.996 at 16, as at 32)
    ivf_train_per_list: int = 64  # training sample: this many rows per list (FAISS wants >= 39)
    ivf_train_iterations: int = 10  # k-means iterations (as FAISS by default)
    ivf_regrow: float = 4.0  # ivf: retrain once the rows exceed this x the trained rows
    widen_limit: int = 64  # filtered search widens ef/nprobe up to this x the default, then exact
    # filtered search with fewer candidates than this share of the catalog scans the candidates'
    # codes instead of walking the graph or probing lists (HNSW under a 1% filter visits ~100x the
    # nodes it returns; the scan decodes the candidates alone)
    scan_share: float = 0.05
    seed: int = 0
    # how the index stores the vectors: flat (float32), sq8 (a byte per dimension: a quarter of
    # the memory), or auto: sq8 once the flat vectors would exceed flat_limit_bytes (at 1M items
    # of 1408 dims, flat is 5.6 GB in the index and in the service that holds it)
    codec: str = "auto"
    flat_limit_bytes: int = 1 << 30
    rerank: int = 4  # sq8: this x k candidates rescored exactly from the store's rows (when given)
    train_bytes: int = 512 << 20  # ivf and sq8: the training sample's float32 size at most

    def codec_for(self, rows: int, dim: int) -> str:
        if self.codec not in CODECS:
            raise InvalidValue(f"index codec must be one of {CODECS}, got {self.codec!r}")
        if self.codec != "auto":
            return self.codec
        return "sq8" if rows * dim * 4 > self.flat_limit_bytes else "flat"

    def kind_for(self, rows: int, dim: int = 128) -> str:
        """``exact_below`` counts rows of 128 floats: exact search costs rows x dim, so wider
        vectors get an index sooner (44k items of 1,408 floats: ~25 ms a query exact)."""
        if self.kind not in KINDS:
            raise InvalidValue(f"index kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind != "auto":
            return self.kind
        if rows * max(dim, 128) < self.exact_below * 128:
            return "exact"
        return "hnsw" if rows < self.ivf_from else "ivf"


def _faiss():
    import faiss

    return faiss


def unit_rows(matrix: np.ndarray, start: int = 0, stop: int | None = None) -> np.ndarray:
    """float32 rows ``start:stop`` scaled to unit length (zero rows stay zero), a new array."""
    return _to_unit(np.array(matrix[start:stop], dtype=np.float32))


def _gathered_unit(matrix, rows: np.ndarray) -> np.ndarray:
    """float32 ``matrix[rows]`` scaled to unit length. A gather is a new array (ndarray, memory
    map or NpyRows alike), so it is scaled in place: at 1M rows of 1,408 floats the index's
    training sample is 0.5 GB, and a copy of it (or the squares np.linalg.norm makes) another."""
    return _to_unit(np.asarray(matrix[rows], dtype=np.float32))


def _to_unit(x: np.ndarray) -> np.ndarray:
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))[:, None]  # no [rows, dim] temporary
    np.divide(x, norms, out=x, where=norms > 0)
    return x


def store_version(meta: dict) -> dict:
    """What identifies the store version an index describes (from the store's meta.json)."""
    return {"model_id": meta.get("model_id"), "created": meta.get("created"), "rows": int(meta["items"]),
            "dim": int(meta["dim"])}


class AnnIndex:
    """A FAISS index over a store's rows, with the label -> row map; read-only once made."""

    def __init__(self, index, label_row: np.ndarray, meta: dict, settings: AnnSettings = AnnSettings(), vectors=None):
        self.index = index
        # the store's rows (a memory map): a compressed index's candidates are rescored on them
        self.vectors = vectors
        self.label_row = np.asarray(label_row, dtype=np.int64)
        self.meta = meta
        self.settings = settings
        rows = int(meta["version"]["rows"])
        live = np.flatnonzero(self.label_row >= 0)
        self.row_label = np.full(rows, -1, dtype=np.int64)
        self.row_label[self.label_row[live]] = live
        self.removed = len(self.label_row) - len(live)
        # HNSW keeps removed labels in its graph (tombstones): every search must skip them;
        # IVF removes them for real
        self.dead = self.removed if meta["kind"] == "hnsw" else 0
        self._live_bits = np.packbits(self.label_row >= 0, bitorder="little") if self.dead else None

    @property
    def kind(self) -> str:
        return self.meta["kind"]

    @property
    def live(self) -> int:
        return len(self.label_row) - self.removed

    # -- reading -------------------------------------------------------------------------
    @staticmethod
    def directory(store_path: str | Path) -> Path:
        return Path(store_path) / ANN_DIR

    @classmethod
    def read(cls, store_path: str | Path, settings: AnnSettings | None = None, mapped: bool = False) -> "AnnIndex | None":
        """The index in a store directory, or None when there is none; ``mapped``: memory-
        mapped and read-only (searches only: an update needs it read into memory)."""
        directory = cls.directory(store_path)
        if not (directory / "meta.json").is_file():
            return None
        meta = json.loads((directory / "meta.json").read_text())
        faiss = _faiss()
        flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if mapped else 0
        index = faiss.read_index(str(directory / "index.faiss"), flags)
        settings = settings or AnnSettings(**{k: v for k, v in meta.get("settings", {}).items()
                                             if k in AnnSettings.__dataclass_fields__})
        return cls(index, np.load(directory / "labels.npy"), meta, settings)

    @classmethod
    def open(cls, store, settings: AnnSettings | None = None, mapped: bool = False) -> "AnnIndex | None":
        """The index of an :class:`~k3m.embedding.store.EmbeddingStore` when it describes the
        store as it is (None when there is none or it describes another version)."""
        index = cls.read(store.path, settings, mapped)
        if index is None or index.meta["version"] != store_version(store.meta):
            return None
        # rescoring reads its few rows with positioned I/O: through the memory map, each row's
        # page fault mapped its neighbourhood too (3.6 GB of the store mapped into the 1M
        # service after 500 queries); a matrix already in memory is used as it is
        index.vectors = store.matrix_file() if isinstance(store.matrix, np.memmap) else store.matrix
        return index

    @property
    def codec(self) -> str:
        return self.meta.get("codec", "flat")

    def describe(self) -> dict:
        return {"kind": self.kind, "codec": self.codec, "live": self.live, "dead": self.dead, "params": self.meta["params"],
                "last_update": self.meta.get("last_update")}

    # -- searching -----------------------------------------------------------------------
    def search(self, query: np.ndarray, k: int, rows: np.ndarray | None = None,
               exclude: int | None = None, exact: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(store rows, cosine scores) of up to ``k`` nearest rows, best first.

        ``rows``: only these store rows may be returned (a graph constraint's candidates),
        passed to FAISS as an ID selector. ``exclude``: a row never returned (the query
        item). Fewer than ``min(k, candidates)`` hits means the index could not fill the
        answer even widened: the caller ranks the candidates exactly (their number is known).
        ``exact=False``: the codes' scores and order, not rescored on the store's rows (a
        caller that filters many hits rescores the few it keeps: :meth:`rescored`).
        """
        faiss = _faiss()
        q = np.asarray(query, dtype=np.float32).reshape(1, -1).copy()
        faiss.normalize_L2(q)
        if rows is not None:
            rows = np.asarray(rows, dtype=np.int64)
            if exclude is not None:
                rows = rows[rows != exclude]
            wanted = min(k, len(rows))
            labels = self.row_label[rows]
            labels = labels[labels >= 0]
            bits = np.zeros(len(self.label_row), dtype=bool)
            bits[labels] = True
            bitmap = np.packbits(bits, bitorder="little")
        else:
            wanted = min(k, self.live - (exclude is not None))
            bitmap = self._live_bits
        fetch = k + (exclude is not None)
        rescore = exact and self.codec != "flat" and self.vectors is not None
        if rescore:  # approximate scores: more candidates, ranked on the exact vectors
            fetch = self.settings.rerank * k + (exclude is not None)
        if rows is not None and len(rows) < self.settings.scan_share * self.live:
            # a selective constraint: a graph index would walk mostly past non-candidates, so
            # its codes are scanned for the candidates alone (exact on the codes)
            found_rows, found_scores = self._scan(q, fetch, bitmap, exclude)
            if rescore:
                found_rows, found_scores = self._rescore(q[0], found_rows)
            return found_rows[:k], found_scores[:k]
        widen = 1
        if rows is not None and len(rows):
            # the index meets candidates at their share of the catalog: look at 1/share times
            # more (efSearch, or lists probed) from the start
            widen = int(min(self.settings.widen_limit, math.ceil(self.live / len(rows))))
        while True:
            sel = faiss.IDSelectorBitmap(len(self.label_row), faiss.swig_ptr(bitmap)) if bitmap is not None else None
            scores, labels_found = self.index.search(q, fetch, params=self._params(widen, sel))
            found_rows, found_scores = self._found_rows(labels_found[0], scores[0], exclude)
            if rescore:
                found_rows, found_scores = self._rescore(q[0], found_rows)
            if len(found_rows) >= wanted:
                return found_rows[:k], found_scores[:k]
            if widen >= self.settings.widen_limit:
                break
            widen = min(widen * 4, self.settings.widen_limit)
        return found_rows[:k], found_scores[:k]

    def _scan(self, q: np.ndarray, fetch: int, bitmap: np.ndarray, exclude: int | None) -> tuple[np.ndarray, np.ndarray]:
        """The best ``fetch`` of the bitmap's labels by their stored codes: HNSW's flat storage
        (the graph's vectors, searched without the graph), or every IVF list. The bitmap is
        tested first, so only candidates' codes are decoded: cost ~ labels/8 bytes + candidates x dim."""
        faiss = _faiss()
        sel = faiss.IDSelectorBitmap(len(self.label_row), faiss.swig_ptr(bitmap))
        if self.kind == "hnsw":
            scores, found = faiss.downcast_index(self.index.storage).search(q, fetch, params=faiss.SearchParameters(sel=sel))
        else:
            nlist = self.meta["params"]["nlist"]
            scores, found = self.index.search(q, fetch, params=faiss.SearchParametersIVF(nprobe=nlist, sel=sel))
        return self._found_rows(found[0], scores[0], exclude)

    def _found_rows(self, labels: np.ndarray, scores: np.ndarray, exclude: int | None) -> tuple[np.ndarray, np.ndarray]:
        """FAISS's labels as store rows (no -1 padding, never ``exclude``), with their scores."""
        keep = labels >= 0
        rows, scores = self.label_row[labels[keep]], scores[keep]
        if exclude is not None:
            mask = rows != exclude
            rows, scores = rows[mask], scores[mask]
        return rows, scores

    def rescored(self, query: np.ndarray, rows: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The best ``k`` of rows found with ``exact=False`` (best first by the codes): the
        first ``rerank`` x k rescored on the store's rows, as an exact search does."""
        if self.codec == "flat" or self.vectors is None:
            return rows[:k], scores[:k]
        q = np.asarray(query, dtype=np.float32).reshape(1, -1).copy()
        _faiss().normalize_L2(q)
        found, exact = self._rescore(q[0], rows[:self.settings.rerank * k])
        return found[:k], exact[:k]

    def _rescore(self, query: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``rows`` ranked by their exact cosine with the (unit) query, best first (ties: lower row)."""
        if not len(rows):
            return rows, np.zeros(0, np.float32)
        order = np.argsort(rows)
        vectors = _gathered_unit(self.vectors, rows[order])
        scores = np.empty(len(rows), np.float32)
        scores[order] = vectors @ query
        best = np.lexsort((rows, -scores))
        return rows[best], scores[best]

    def _params(self, widen: int, sel):
        faiss = _faiss()
        p = self.meta["params"]
        if self.kind == "hnsw":
            ef = max(self.settings.hnsw_ef_search * widen, 1)
            return faiss.SearchParametersHNSW(efSearch=ef, sel=sel) if sel is not None else faiss.SearchParametersHNSW(efSearch=ef)
        nprobe = min(p["nlist"], self.settings.ivf_nprobe * widen)
        return faiss.SearchParametersIVF(nprobe=nprobe, sel=sel) if sel is not None else faiss.SearchParametersIVF(nprobe=nprobe)


# -- making and updating ---------------------------------------------------------------------
def build_index(matrix: np.ndarray, version: dict, settings: AnnSettings = AnnSettings(),
                kind: str | None = None) -> AnnIndex | None:
    """A fresh index over every row of ``matrix`` (None for kind ``exact``)."""
    rows = len(matrix)
    kind = kind or settings.kind_for(rows, int(matrix.shape[1]))
    if kind == "exact":
        return None
    faiss = _faiss()
    dim = int(matrix.shape[1])
    codec = settings.codec_for(rows, dim)
    sq8 = faiss.ScalarQuantizer.QT_8bit
    # the training sample (IVF's lists, SQ8's ranges) is at most train_bytes of float32
    most = max(1, settings.train_bytes // (4 * dim))
    if kind == "hnsw":
        if codec == "sq8":
            index = faiss.IndexHNSWSQ(dim, sq8, settings.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        else:
            index = faiss.IndexHNSWFlat(dim, settings.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = settings.hnsw_ef_construction
        params = {"M": settings.hnsw_m, "efConstruction": settings.hnsw_ef_construction}
        sample_rows = min(rows, most) if codec == "sq8" else 0
    elif kind == "ivf":
        nlist = int(round(settings.ivf_lists_per_sqrt * math.sqrt(max(rows, 1))))
        nlist = max(1, min(rows // 39 or 1, most // 39 or 1, nlist))  # FAISS wants >= 39 training rows per list
        quantizer = faiss.IndexFlatIP(dim)
        if codec == "sq8":
            index = faiss.IndexIVFScalarQuantizer(quantizer, dim, nlist, sq8, faiss.METRIC_INNER_PRODUCT)
        else:
            index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.own_fields = True
        quantizer.this.disown()
        index.cp.niter = settings.ivf_train_iterations
        sample_rows = min(rows, nlist * settings.ivf_train_per_list, most)
        params = {"nlist": nlist, "trained_rows": rows}
    else:
        raise InvalidValue(f"index kind must be one of {KINDS}, got {kind!r}")
    if sample_rows:
        sample = np.random.default_rng(settings.seed).choice(rows, sample_rows, replace=False)
        index.train(_gathered_unit(matrix, np.sort(sample)))
    label_row = np.arange(rows, dtype=np.int64)
    _add(index, kind, matrix, label_row)
    meta = {"kind": kind, "codec": codec, "params": params, "settings": asdict(settings), "version": version,
            "faiss": faiss.__version__, "last_update": {"mode": "built", "added": rows, "removed": 0,
                                                         "at": _now()}}
    return AnnIndex(index, label_row, meta, settings)


def update_index(previous: AnnIndex, old_keys: np.ndarray, matrix: np.ndarray, new_keys: np.ndarray,
                 version: dict, settings: AnnSettings | None = None) -> AnnIndex | None:
    """``previous`` (an index of the store whose rows had ``old_keys``) brought to the rows of
    ``matrix`` (keys ``new_keys``). A key says which vector a row holds, (item id, created):
    equal keys are the same vector, kept with its label; the others are removed and added.
    Rebuilt instead when the tombstones (HNSW) or the growth (IVF) say so."""
    from etl.string_arrays import RowOf

    settings = settings or previous.settings
    kind = previous.kind
    labels = previous.label_row
    live = np.flatnonzero(labels >= 0)
    # where each live label's vector is in the new store (-1: removed or recomputed)
    now_at = RowOf(new_keys).find(old_keys[labels[live]]) if len(live) else np.empty(0, np.int64)
    gone = live[now_at < 0]
    kept_rows = now_at[now_at >= 0]
    added = np.setdiff1d(np.arange(len(matrix), dtype=np.int64), kept_rows, assume_unique=False)
    label_row = labels.copy()
    label_row[live] = now_at
    dead_after = (np.count_nonzero(label_row < 0) if kind == "hnsw" else 0)
    total_after = len(label_row) + len(added)
    if (kind == "hnsw" and dead_after > settings.rebuild_dead_fraction * total_after) or \
            (kind == "ivf" and len(matrix) > settings.ivf_regrow * previous.meta["params"]["trained_rows"]):
        rebuilt = build_index(matrix, version, settings, kind)
        rebuilt.meta["last_update"] = {"mode": "rebuilt", "added": len(matrix), "removed": int(len(live)), "at": _now()}
        return rebuilt
    index = previous.index
    if kind == "ivf" and len(gone):
        index.remove_ids(_faiss().IDSelectorBatch(gone.astype(np.int64)))
    new_labels = np.arange(len(label_row), len(label_row) + len(added), dtype=np.int64)
    label_row = np.concatenate([label_row, added])
    _add(index, kind, matrix, label_row, new_labels)
    meta = {**previous.meta, "version": version, "settings": asdict(settings),
            "last_update": {"mode": "incremental", "added": int(len(added)), "removed": int(len(gone)), "at": _now()}}
    return AnnIndex(index, label_row, meta, settings)


def _add(index, kind: str, matrix: np.ndarray, label_row: np.ndarray, labels: np.ndarray | None = None,
         chunk: int = 65536) -> None:
    """Add the rows of ``labels`` (default: all of ``label_row``) in label order, in chunks."""
    labels = np.arange(len(label_row), dtype=np.int64) if labels is None else labels
    for start in range(0, len(labels), chunk):
        part = labels[start:start + chunk]
        vectors = _gathered_unit(matrix, np.asarray(label_row[part])) if len(part) else None
        if vectors is None:
            continue
        if kind == "hnsw":  # HNSW numbers vectors in the order added: that order is the label
            assert index.ntotal == part[0], (index.ntotal, part[0])
            index.add(vectors)
        else:
            index.add_with_ids(vectors, part)


def save_index(ann: AnnIndex, store_path: str | Path) -> Path:
    """Write ``ann`` into ``store_path/ann/`` (a temporary sibling renamed into place)."""
    from etl.atomic import writing_directory

    directory = AnnIndex.directory(store_path)
    with writing_directory(directory) as tmp:
        write_files(ann, tmp)
    return directory


def write_files(ann: AnnIndex, directory: Path) -> None:
    _faiss().write_index(ann.index, str(directory / "index.faiss"))
    np.save(directory / "labels.npy", ann.label_row)
    meta = {**ann.meta, "live": ann.live, "dead": ann.dead}
    (directory / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")


def row_keys(ids, created) -> np.ndarray:
    """What identifies the vector of each row: (item id, when the row was computed), as one
    numpy string per row (StringDType, vectorised: no Python object per row)."""
    from etl.string_arrays import STRINGS

    ids, created = np.asarray(ids, dtype=STRINGS), np.asarray(created, dtype=STRINGS)
    return np.strings.add(np.strings.add(ids, "\x1f"), created)


def index_for_write(previous_store, matrix: np.ndarray, ids, created, meta: dict,
                    settings: AnnSettings = AnnSettings()) -> AnnIndex | None:
    """The index to write with a new version of a store: ``previous_store``'s index updated
    (it keeps its kind), else a fresh one when ``settings`` call for one at this size."""
    version = store_version(meta)
    previous = AnnIndex.open(previous_store) if previous_store is not None else None
    if previous is not None and settings.kind in ("auto", previous.kind):
        old_keys = row_keys(previous_store.ids, previous_store.created)
        return update_index(previous, old_keys, matrix, row_keys(ids, created), version)
    return build_index(matrix, version, settings)


def ensure_index(store, settings: AnnSettings = AnnSettings(), rebuild: bool = False) -> AnnIndex | None:
    """Make the store's index match ``settings`` (``k3m embed``): kept when current and of the
    asked kind (``auto`` accepts the kind it has), else built anew; kind ``exact`` removes it."""
    current = None if rebuild else AnnIndex.open(store)
    if current is not None and settings.kind in ("auto", current.kind):
        return current
    kind = settings.kind_for(len(store.ids), int(store.meta["dim"]))
    if kind == "exact":
        remove_index(store.path)
        return None
    with store.matrix_file() as matrix:  # read in chunks, not mapped: the pass touches every row
        ann = build_index(matrix, store_version(store.meta), settings, kind)
    save_index(ann, store.path)
    return ann


def remove_index(store_path: str | Path) -> bool:
    directory = AnnIndex.directory(store_path)
    if directory.is_dir():
        shutil.rmtree(directory)
        return True
    return False


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
