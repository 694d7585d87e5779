"""Nearest items by cosine similarity of their embeddings, through the graph.

Four ways, picked from the capabilities the connection probed at connect time and what the
build holds:

``native``  Neo4j 5.11+: ``db.index.vector.queryNodes`` over the ``k3m_item_embedding``
            vector index (created by ``k3m embed``), graph constraints applied to the hits;
            approximate, over-fetches and widens until k hits pass the constraints.
``ann``     the store's FAISS index (k3m/embedding/ann_index.py; large catalogs): the
            constraints run in Cypher and return candidate ids, which become the index's ID
            selector (a small candidate set is ranked exactly instead); approximate.
``client``  exact cosine top-k over the build's memory-mapped embedding matrix, in numpy,
            over the candidates from Cypher (the reference; the default for catalogs below
            the index threshold and on the embedded server, which refuses
            ``CREATE VECTOR INDEX``). The winning ids go back to Cypher for display.
            Without constraints no candidate query is needed.
``cypher``  needs nothing but the graph: ``vector.similarity.cosine`` over the candidates
            in Cypher (exact, but the server computes it row by row: slow on many items).

``auto`` = native when the server has a vector index, else ann when the build's store has
a current index, else client when the build's embeddings are at hand, else cypher. Every
way returns raw cosine similarity in [-1, 1].
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from etl.errors import InvalidValue, UserError
from k3m.embedding.store import EmbeddingStore
from k3m.embedding.writeback import INDEX_NAME
from k3m.query.patterns import QUERY_ITEM, ItemFilter, candidate_query, member_query

STRATEGIES = ("auto", "native", "ann", "client", "cypher")
# ann: a constraint with at most this many candidates (rows of 128 floats: wider rows count for
# more) is ranked exactly on the store's rows (~2 ms; 1,818 candidates of 1,408 floats)
EXACT_CANDIDATES = 20_000
# ann: candidate ids fetched from the graph at most (one bounded list, ~10 ms); a constraint
# with more is applied to the nearest items instead (checked in Cypher, widened x4 up to
# CHECK_LIMIT of them), and only a constraint rarer among the neighbours than that is fetched whole
CANDIDATE_FETCH = 2_000
CHECK_LIMIT = 4_096
_NORM_CHUNK = 65536  # rows per chunk when computing norms of a memory-mapped matrix


class VectorSearchError(UserError, RuntimeError):
    """The chosen way cannot run on this connection / build (no embeddings, no index)."""


@dataclass(frozen=True)
class Hit:
    id: str
    score: float  # cosine similarity


def exact_topk(matrix: np.ndarray, query: np.ndarray, k: int, rows: np.ndarray | None = None,
               inv_norms: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine top-k of ``query`` against ``matrix`` rows (all, or only ``rows``).

    Returns (rows, scores), best first; ties broken by the lower row so results are
    deterministic. ``inv_norms`` (1/‖row‖, 0 for zero rows) saves recomputing norms.
    """
    q = np.asarray(query, dtype=np.float32)
    qn = float(np.linalg.norm(q))
    q = q / qn if qn > 0 else q
    sub = matrix if rows is None else matrix[rows]
    scores = np.asarray(sub @ q, dtype=np.float32)
    if inv_norms is None:
        norms = np.linalg.norm(np.asarray(sub, dtype=np.float32), axis=1)
        scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    else:
        scale = inv_norms if rows is None else inv_norms[rows]
    scores *= scale
    candidates = np.arange(len(scores)) if rows is None else np.asarray(rows)
    k = min(k, len(scores))
    if k <= 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
    top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
    order = np.lexsort((candidates[top], -scores[top]))
    top = top[order]
    return candidates[top].astype(np.int64), scores[top]


class ExactIndex:
    """Exact cosine search over a store's matrix: float32 view and row norms, computed once."""

    def __init__(self, store: EmbeddingStore):
        self.store = store

    @cached_property
    def matrix(self) -> np.ndarray:
        m = self.store.matrix
        # float16 has no BLAS path in numpy: widen once (documented cost: 2x the file in RAM)
        return m if m.dtype == np.float32 else np.asarray(m, dtype=np.float32)

    @cached_property
    def rows_reader(self):
        """The store's rows read with positioned I/O (candidates gathered without mapping)."""
        return self.store.matrix_file()

    @cached_property
    def inv_norms(self) -> np.ndarray:
        if isinstance(self.store.matrix, np.memmap):  # one pass read from the file: a mapped pass would stay resident
            with self.store.matrix_file() as m:
                norms = np.concatenate([np.linalg.norm(np.asarray(c, np.float32), axis=1) for _, c in m.chunks(_NORM_CHUNK)]
                                       or [np.zeros(0, np.float32)])
        else:
            m = self.matrix
            norms = np.concatenate([np.linalg.norm(m[a:a + _NORM_CHUNK], axis=1) for a in range(0, len(m), _NORM_CHUNK)])
        return np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0).astype(np.float32)

    def search(self, query: np.ndarray, k: int, rows: np.ndarray | None = None, exclude: int | None = None):
        if exclude is not None and rows is not None:
            rows = rows[rows != exclude]
        # candidates alone: their own norms (the catalog's, computed once, read the whole matrix)
        norms = self.inv_norms if rows is None or "inv_norms" in self.__dict__ else None
        if rows is not None and isinstance(self.matrix, np.memmap):  # read, not mapped (see AnnIndex.open)
            return exact_topk(self.rows_reader, query, k, np.asarray(rows, np.int64), norms)
        top_rows, scores = exact_topk(self.matrix, query, k + (exclude is not None and rows is None), rows, norms)
        if exclude is not None and rows is None:
            keep = top_rows != exclude
            top_rows, scores = top_rows[keep][:k], scores[keep][:k]
        return top_rows, scores


class VectorSearch:
    """Similar items of an item id under an :class:`ItemFilter`, by the chosen strategy."""

    def __init__(self, db, store: EmbeddingStore | None = None, strategy: str = "auto", ann=None,
                 exact_candidates: int = EXACT_CANDIDATES, mapped: bool = True, candidate_fetch: int | None = CANDIDATE_FETCH):
        """``ann``: the store's :class:`~k3m.embedding.ann_index.AnnIndex` when already read;
        read from the store when the strategy needs it: memory-mapped (``mapped``, a query
        command: a large index opens at once and only the pages searched are read) or into
        memory (a service keeps it warm)."""
        if strategy not in STRATEGIES:
            raise InvalidValue(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
        self.db = db
        self.store = store
        self.exact_candidates = exact_candidates
        self.candidate_fetch = candidate_fetch  # None: always fetch every candidate (the ID-selector path)
        self.ann = ann if ann is not None else (store.ann_index(mapped) if store is not None and strategy in ("auto", "ann")
                                                and not db.capabilities.native_vector_index else None)
        self.strategy = self._resolve(strategy)
        self.index = ExactIndex(store) if store is not None else None

    def _resolve(self, strategy: str) -> str:
        caps = self.db.capabilities
        if strategy == "auto":
            if caps.native_vector_index:
                return "native"
            if self.ann is not None:
                return "ann"
            if self.store is not None:
                return "client"
            if caps.vector_similarity_function:
                return "cypher"
            raise VectorSearchError("no way to search: the server has neither a vector index nor "
                                    "vector.similarity.cosine, and no build embeddings were given")
        if strategy == "native" and not caps.native_vector_index:
            raise VectorSearchError(f"{caps.agent} has no native vector index (db.index.vector.queryNodes)")
        if strategy == "cypher" and not caps.vector_similarity_function:
            raise VectorSearchError(f"{caps.agent} has no vector.similarity.cosine")
        if strategy == "client" and self.store is None:
            raise VectorSearchError("strategy 'client' needs the build's embeddings (k3m embed)")
        if strategy == "ann" and self.ann is None:
            where = f" ({self.store.path})" if self.store is not None else ""
            raise VectorSearchError(f"strategy 'ann' needs the store's nearest-neighbour index{where}: "
                                    f"`k3m embed --checkpoint RUN BUILD --index hnsw` builds one")
        return strategy

    @property
    def model_id(self) -> str | None:
        return self.store.model_id if self.store is not None else None

    def similar(self, item_id: str, k: int = 10, item_filter: ItemFilter = ItemFilter()) -> list[Hit]:
        if k < 1:
            raise InvalidValue(f"k must be positive, got {k}")
        return getattr(self, f"_{self.strategy}")(str(item_id), k, item_filter)

    # -- client: candidates from Cypher, exact top-k here ------------------------------
    def candidate_rows(self, item_id: str, item_filter: ItemFilter, limit: int | None = None) -> np.ndarray | None:
        """Rows of the store meeting the filter (None = no constraint: all rows); ``limit``:
        at most that many of the graph's candidates (more exist when that many come back)."""
        if item_filter.is_empty:
            return None
        text, params = candidate_query(item_filter, limited=limit is not None)
        if limit is not None:
            params["limit"] = int(limit)
        ids = self.db.run(text, item_id=item_id, **params)[0]["ids"]
        rows = self.store.row_index.find(ids)
        return rows[rows >= 0]

    def _row(self, item_id: str) -> int:
        row = self.store.row_index.get(item_id)
        if row is None:
            raise VectorSearchError(f"item {item_id!r} has no embedding in {self.store.path} (is it an item of "
                                    f"{self.store.path.parent.parent}?)")
        return row

    def _hits(self, top, scores) -> list[Hit]:
        ids = self.store.ids_at(top)
        return [Hit(str(i), float(s)) for i, s in zip(ids.tolist(), scores)]

    def _client(self, item_id: str, k: int, item_filter: ItemFilter) -> list[Hit]:
        row = self._row(item_id)
        rows = self.candidate_rows(item_id, item_filter)
        top, scores = self.index.search(self.index.matrix[row], k, rows, exclude=row)
        return self._hits(top, scores)

    # -- ann: the store's FAISS index, the candidates as its ID selector ----------------
    def _ann(self, item_id: str, k: int, item_filter: ItemFilter) -> list[Hit]:
        row = self._row(item_id)
        query = self.store.matrix[row]
        if self.candidate_fetch is not None and not item_filter.is_empty:
            # first the 4k nearest items checked against the constraint (one cheap query from
            # each bound item): a constraint the neighbours share (same brand) ends here
            found = self._nearest_meeting(item_id, query, row, k, item_filter, first=4 * k, last=4 * k)
            if found is not None:
                return self._hits(*found)
            rows = self.candidate_rows(item_id, item_filter, limit=self.candidate_fetch + 1)
            if len(rows) > self.candidate_fetch:  # a common constraint: more of the nearest items checked
                found = self._nearest_meeting(item_id, query, row, k, item_filter, first=16 * k, last=CHECK_LIMIT)
                if found is not None:
                    return self._hits(*found)
                rows = self.candidate_rows(item_id, item_filter)  # rarer among the neighbours: all of them
        else:
            rows = self.candidate_rows(item_id, item_filter)
        if rows is not None and len(rows) * max(int(self.store.meta["dim"]), 128) <= self.exact_candidates * 128:  # as fast, and exact
            return self._hits(*self.index.search(query, k, rows, exclude=row))
        top, scores = self.ann.search(query, k, rows, exclude=row)
        if rows is not None and len(top) < min(k, np.count_nonzero(rows != row)):
            # a selective constraint the widened index search could not fill: rank its
            # (counted, bounded) candidates exactly rather than return fewer hits
            return self._hits(*self.index.search(query, k, rows, exclude=row))
        return self._hits(top, scores)

    def _nearest_meeting(self, item_id: str, query, row: int, k: int, item_filter: ItemFilter, first: int, last: int):
        """(rows, scores) of the k nearest items meeting the filter, found among the index's
        ``first``, 4 x ``first``, ... nearest (at most ``last``) checked in Cypher; None when
        even those hold fewer than k."""
        text, params = member_query(item_filter)
        fetch = first
        while True:
            # the codes' order (a compressed index): only the few kept are rescored on the store's rows
            top, scores = self.ann.search(query, fetch, exclude=row, exact=False)
            ids = self.store.ids_at(top)
            meeting = set(self.db.run(text, item_id=item_id, ids=ids.tolist(), **params)[0]["ids"])
            keep = np.fromiter((i in meeting for i in ids.tolist()), bool, len(top))
            if keep.sum() >= k:
                return self.ann.rescored(query, top[keep], scores[keep], k)
            if fetch >= min(last, self.ann.live):
                return None
            fetch = min(fetch * 4, last)

    # -- cypher: vector.similarity.cosine in the server ----------------------------------
    @cached_property
    def _cosine_shifted(self) -> bool:
        """Neo4j's vector.similarity.cosine returns (1 + cos) / 2; probe which one we have."""
        s = self.db.run("RETURN vector.similarity.cosine([1.0, 0.0], [0.0, 1.0]) AS s")[0]["s"]
        return abs(s - 0.5) < 1e-6

    def _cosine(self, score: float) -> float:
        return 2.0 * score - 1.0 if self._cosine_shifted else score

    def _cypher(self, item_id: str, k: int, item_filter: ItemFilter) -> list[Hit]:
        lines, where, params = item_filter.match_clauses()
        where = ["i <> q", "i.embedding IS NOT NULL", "i.embedding_model = q.embedding_model"] + where
        text = "\n".join([QUERY_ITEM, *lines, f"WHERE {' AND '.join(where)}",
                          "WITH DISTINCT q, i",
                          "WITH i, vector.similarity.cosine(q.embedding, i.embedding) AS score",
                          "RETURN i.id AS id, score ORDER BY score DESC, id LIMIT $k"])
        rows = self.db.run(text, item_id=item_id, k=k, **params)
        return [Hit(r["id"], self._cosine(r["score"])) for r in rows]

    # -- native: the server's vector index, then the constraints ------------------------
    @cached_property
    def _embedded_items(self) -> int:
        return self.db.run("MATCH (i:Item) WHERE i.embedding IS NOT NULL RETURN count(i) AS n")[0]["n"]

    def _native(self, item_id: str, k: int, item_filter: ItemFilter) -> list[Hit]:
        lines, where, params = item_filter.match_clauses()
        # the hits are bound to i already: the filter's patterns then only check them
        checks = [line for line in lines if line != "MATCH (i:Item)"]
        text = "\n".join([
            QUERY_ITEM,
            "CALL db.index.vector.queryNodes($index, $fetch, q.embedding) YIELD node AS i, score",
            "WITH q, i, score WHERE i <> q",
            *checks,
            *([f"WHERE {' AND '.join(where)}"] if where else []),
            "WITH DISTINCT i, score",
            "RETURN i.id AS id, score ORDER BY score DESC, id LIMIT $k",
        ])
        total = self._embedded_items
        fetch = min(total, 4 * k + 1)
        while True:  # the index is approximate and filters after: widen until k pass
            rows = self.db.run(text, item_id=item_id, index=INDEX_NAME, fetch=fetch, k=k, **params)
            if len(rows) >= k or fetch >= total:
                return [Hit(r["id"], 2.0 * r["score"] - 1.0) for r in rows]  # index score = (1+cos)/2
            fetch = min(total, fetch * 4)
