"""Write a build's item embeddings onto the graph's Item nodes, in batches, idempotently.

Each item gets ``embedding`` (list of floats), ``embedding_model`` (the model id) and
``embedding_created`` (when the item's vector was computed: the store's ``created`` of its
row; an incremental ``k3m embed`` keeps the rows it did not recompute, and their times).
The version on a node is the pair (model, created): items already carrying their row's
version are skipped unless ``force``, so re-running a write-back sends nothing, after an
update only the new and changed items are sent, and items the graph does not have are
counted, never created. A vector holding NaN or inf is never sent: the rows to send are
checked first and the write-back refused, naming the items.

Speed on the embedded server: the Python driver packs every float on its own (~2 µs per
float without the optional Rust extension ``neo4j-rust-ext``) and the server decodes about
as fast, so batches go out from ``workers`` threads: one thread packs while the server
stores another thread's batch. Each batch is its own transaction; the writes are plain SETs
on distinct nodes, so batches commute and a retry is harmless.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import numpy as np

from etl.errors import InvalidValue
from etl.string_arrays import STRINGS
from k3m.embedding.store import EmbeddingStore, NonFiniteVectors, non_finite_rows

INDEX_NAME = "k3m_item_embedding"  # the native vector index, where the server has them (Neo4j 5)
WRITE = """
UNWIND $rows AS r
MATCH (i:Item {id: r.id})
SET i.embedding = r.vec, i.embedding_model = $model, i.embedding_created = r.created
RETURN count(i) AS n
"""
# the graph's version of a slice of the store's items, one collected row (streaming one record
# per item costs ~10x more over Bolt): [id, model, created] of those in the graph (looked up by
# id, as the write does: the id index)
CURRENT = """
UNWIND $ids AS id
MATCH (i:Item {id: id})
RETURN collect([id, i.embedding_model, i.embedding_created]) AS items
"""


@dataclass(frozen=True)
class WritebackSettings:
    batch_size: int = 500  # items per transaction (~0.5 MB of Bolt message at H=128)
    workers: int = 2  # concurrent batches: overlaps client packing with server work
    force: bool = False  # rewrite items that already carry this store's version
    scan: int = 20000  # store rows whose graph version is read at once (memory: this slice, not the catalog)

    def __post_init__(self):
        if self.batch_size < 1 or self.workers < 1 or self.scan < 1:
            raise InvalidValue(f"the write-back's batch size and workers must be positive, got {self.batch_size} "
                               f"and {self.workers}")


@dataclass
class WritebackReport:
    model_id: str
    items: int  # rows of the store
    written: int
    skipped_current: int  # already carried this version
    missing_in_graph: int  # in the store, not in the graph
    seconds: float

    @property
    def items_per_s(self) -> float:
        return self.written / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "items_per_s": round(self.items_per_s, 1)}


def write_back(db, store: EmbeddingStore, settings: WritebackSettings = WritebackSettings(), progress=None) -> WritebackReport:
    """Set ``embedding``/``embedding_model``/``embedding_created`` on the graph's items.

    The store is walked a slice of ``settings.scan`` rows at a time: the graph's version of
    the slice's items is read (by id, through the id index), the rows it lacks are sent in
    batches, then the next slice; memory is bounded by the slice, not the catalog. Every row
    is checked for NaN or inf before anything is sent."""
    started = time.perf_counter()
    with store.matrix_file() as matrix:  # read with file I/O: a memory map would keep every row resident
        return _write_back(db, store, matrix, settings, progress, started)


def _write_back(db, store: EmbeddingStore, matrix, settings: WritebackSettings, progress, started: float) -> WritebackReport:
    model, ids, created = store.model_id, store.ids, store.created
    bad = non_finite_rows(matrix)  # a store written before stores were checked
    if len(bad):
        raise NonFiniteVectors.of("item", ids[bad], len(ids),
                                  f"nothing was written to the graph; recompute {store.path} (k3m embed --recompute)")

    def send(rows: np.ndarray) -> int:
        vectors = np.asarray(matrix[rows], dtype=np.float32).tolist()  # exact float32 values as doubles
        batch = [{"id": i, "vec": vec, "created": c} for i, c, vec in zip(ids[rows].tolist(), created[rows].tolist(), vectors)]
        return _count(db, batch, model)

    written = missing = current = 0
    with ThreadPoolExecutor(max_workers=settings.workers) as pool:
        for lo in range(0, len(ids), settings.scan):
            part = ids[lo:lo + settings.scan]
            names = part.tolist()
            found = db.run(CURRENT, ids=names)[0]["items"]
            position = {item_id: k for k, item_id in enumerate(names)}  # this slice's ids only
            where = np.fromiter((position[i] for i, _, _ in found), np.int64, len(found))
            stale = np.ones(len(found), bool)
            if not settings.force and len(found):
                versions = np.array([f"{m}\x1f{c}" for _, m, c in found], dtype=STRINGS)
                stale = versions != np.strings.add(f"{model}\x1f", created[lo + where])
            todo = lo + np.sort(where[stale])
            missing += len(part) - len(found)
            current += len(found) - len(todo)
            batches = [todo[a:a + settings.batch_size] for a in range(0, len(todo), settings.batch_size)]
            written += sum(pool.map(send, batches))
            if progress:
                progress(min(lo + settings.scan, len(ids)), len(ids))
    return WritebackReport(model, len(ids), written, current, missing, time.perf_counter() - started)


def _count(db, batch: list[dict], model: str) -> int:
    return db.write_transaction(lambda tx: tx.run(WRITE, rows=batch, model=model).single()["n"])


def ensure_native_index(db, dim: int) -> bool:
    """Create the cosine vector index on ``Item.embedding`` where the server has one.

    Returns False (and does nothing) on servers without native vector indexes. ``dim`` is
    an integer we computed, formatted into the statement because index options are not
    parameters in every Neo4j 5 release.
    """
    if not db.capabilities.native_vector_index:
        return False
    db.write(
        f"CREATE VECTOR INDEX {INDEX_NAME} IF NOT EXISTS FOR (i:Item) ON (i.embedding) "
        f"OPTIONS {{indexConfig: {{`vector.dimensions`: {int(dim)}, `vector.similarity_function`: 'cosine'}}}}"
    )
    return True
