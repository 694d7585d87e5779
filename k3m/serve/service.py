"""The query service's state, opened once and kept warm: the graph connection, the build's
embeddings and their nearest-neighbour index, the build's display columns and the LPM
completers. Every answer is a plain dict (the HTTP layer, k3m/serve/app.py, only routes).

Errors say what was wrong with the request: :class:`UnknownItem` (HTTP 404) and
:class:`BadRequest` (HTTP 400); anything else is the service's own failure (500).
"""
from __future__ import annotations

import difflib
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from k3m.embedding.store import EmbeddingStore
from k3m.query.patterns import ItemFilter
from k3m.query.similar import SimilarItem, brand_property
from k3m.query.vector_search import VectorSearch
from k3m.serve.catalog_view import CatalogView


class UnknownItem(LookupError):
    """No item of that id in the served build."""


class BadRequest(ValueError):
    """A parameter the service cannot use (unknown property, malformed constraint)."""


@dataclass(frozen=True)
class ServiceSettings:
    build: Path  # the catalog build whose embeddings are served
    model_id: str | None = None  # default: the build's newest embeddings
    database: str | None = None  # default: the one the build was loaded into
    strategy: str = "auto"  # vector search strategy (k3m/query/vector_search.py)
    max_k: int = 1000  # largest k a request may ask for
    resident: bool = True  # the matrix in memory, not mapped (measured at 1M items: 6.9 -> 3.4 ms p50) ...
    resident_limit_bytes: int = 2 << 30  # ... when it is at most this large (1M items x 1408 float32 are 5.6 GB: mapped)


SIMILAR_ITEM_FIELDS = tuple(SimilarItem.__dataclass_fields__)  # what a hit holds, as in `k3m query similar --json`


class QueryService:
    """Everything a request needs, opened once. ``close()`` releases the graph connection."""

    def __init__(self, settings: ServiceSettings, db=None):
        """``db``: an open :class:`kg.graph_db.GraphDB` (else one is opened and owned)."""
        from etl.catalog_build import CatalogBuild

        started = time.perf_counter()
        self.settings = settings
        self.store = EmbeddingStore.open(settings.build, settings.model_id)
        if settings.resident and self.store.matrix.nbytes <= settings.resident_limit_bytes:
            self.store.resident()
        build = CatalogBuild.open(settings.build)
        self.store.check_build(build)
        self.build = build
        self.view = CatalogView(build)
        self._owns_db = db is None
        if db is None:
            from k3m.query.connection import open_graph

            db = open_graph(settings.database, settings.build)
        self.db = db
        try:
            self.search = VectorSearch(db, self.store, settings.strategy, mapped=False)  # the index warm, in memory
            # warm: the id map, and where every query is exact (no index) the rows' norms (one
            # pass over the matrix; with an index, exactly ranked candidates bring their own)
            _ = self.store.row_of
            if self.search.strategy == "client":
                _ = self.search.index.inv_norms
        except BaseException:
            self.close()
            raise
        self._completers: dict[str, object] = {}
        self._lock = threading.Lock()
        self.started_seconds = time.perf_counter() - started

    def close(self) -> None:
        if self._owns_db:
            self.db.close()

    # -- answers ----------------------------------------------------------------------
    def health(self) -> dict:
        ann = self.search.ann
        return {"status": "ok", "build": str(self.settings.build), "model_id": self.store.model_id,
                "items": int(len(self.store.ids)), "dim": int(self.store.meta["dim"]), "strategy": self.search.strategy,
                "index": ann.describe() if ann is not None else {"kind": "exact"},
                "graph": {"server": self.db.capabilities.agent, "database": self.db.database},
                "started_seconds": round(self.started_seconds, 3)}

    def row(self, item_id: str) -> int:
        row = self.store.row_of.get(item_id)
        if row is None:
            raise UnknownItem(f"item {item_id!r} is not in build {self.settings.build} "
                              f"(model {self.store.model_id}, {len(self.store.ids)} items)")
        return row

    def item_filter(self, same: list[str], same_brand: bool, where: list[str], category: str | None,
                    has_image: bool | None) -> ItemFilter:
        from k3m.query.similar import parse_where

        try:
            same = ([brand_property(self.view.properties, self.view.facts_per_property)] if same_brand else []) + list(same)
            equals = parse_where(where)
        except (LookupError, ValueError) as exc:
            raise BadRequest(str(exc)) from None
        self.check_properties(same + [p for p, _ in equals])
        return ItemFilter(same=tuple(same), equals=equals, category=category, has_image=has_image)

    def check_properties(self, names) -> None:
        for name in names:
            if name not in self.view.property_index:
                close = difflib.get_close_matches(name, self.view.properties, n=3)
                raise BadRequest(f"property {name!r} is not in the build" + (f" (close: {', '.join(close)})" if close else ""))

    def similar(self, item_id: str, k: int = 10, item_filter: ItemFilter = ItemFilter(), show=()) -> dict:
        started = time.perf_counter()
        row = self.row(item_id)
        self.check_properties(show)
        hits = self.search.similar(item_id, min(k, self.settings.max_k), item_filter)

        def item(r: int, item_id: str, score: float) -> dict:
            # the fields of k3m.query.similar.SimilarItem, built directly (dataclasses.asdict
            # costs more than the search itself)
            return {"id": item_id, "score": score, **self.view.display(r),
                    "properties": self.view.facts(r, show) if show else {}}

        row_of = self.store.row_of
        return {"item": item(row, item_id, 1.0), "hits": [item(row_of[h.id], h.id, h.score) for h in hits],
                "constraint": item_filter.describe(), "strategy": self.search.strategy, "model_id": self.store.model_id,
                "milliseconds": (time.perf_counter() - started) * 1000}

    def embedding(self, item_id: str) -> dict:
        row = self.row(item_id)
        vector = np.asarray(self.store.matrix[row], dtype=np.float32)
        return {"id": item_id, "model_id": self.store.model_id, "dim": int(vector.shape[0]),
                "created": self.store.created[row], "embedding": vector.tolist()}

    def complete(self, item_id: str, property_name: str, top_k: int = 3) -> dict:
        """The property's values ranked for the item by the LPM distance ``‖c* + p − v‖``
        less the weighed log frequency of the value (lower = more plausible; k3m.query.complete
        .Completer), next to the values the item has."""
        started = time.perf_counter()
        row = self.row(item_id)
        completer = self.completer(property_name)
        values, scores = completer.rank(np.array([row], dtype=np.int64), top_k)
        distances = completer.distances(values, scores)
        observed = self.view.facts(row, [property_name]).get(property_name, [])
        return {"id": item_id, "property": property_name, "model_id": self.store.model_id,
                "observed": [observed] if isinstance(observed, str) else observed,
                "candidate_values": int(len(completer.values)), "prior_weight": completer.prior_weight,
                "suggestions": [{"rank": n, "value": self.build.values[v], "score": float(c), "distance": float(d)}
                                for n, (v, c, d) in enumerate(zip(values[0].tolist(), scores[0].tolist(),
                                                                  distances[0].tolist()), 1)],
                "milliseconds": (time.perf_counter() - started) * 1000}

    def completer(self, property_name: str):
        from k3m.query.complete import Completer

        with self._lock:
            if property_name not in self._completers:
                try:
                    self._completers[property_name] = Completer(self.store, self.build, property_name)
                except LookupError as exc:
                    raise BadRequest(str(exc)) from None
            return self._completers[property_name]
