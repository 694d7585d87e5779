"""`k3m query complete --property P`: suggest values for items lacking a property (LPM).

    k3m query complete --property baseColour --top-k 3
    k3m query complete --property Fabric --limit 500 --dry-run --json

For every item of the graph that has no ``P`` fact and whose category is one where ``P``
applies (at least ``min_category_share`` of the category's items have it), the property's
known values are ranked by ``S − λ · log P(v)``: the LPM distance ``S = ‖c* + p − v‖`` less
the weighed log frequency of the value (lower = more plausible; ``λ`` chosen on the valid
facts, :class:`Completer`). The best ``top_k`` are written, ``score`` being that sum, as::

    (:Item)-[:SUGGESTED_VALUE {property, score, rank, model, created}]->(:Value)

Observed facts are never touched: suggestions are a separate relationship type, the write
re-checks in the same transaction that the item still lacks ``P``, and an item's earlier
suggestions for (P, model) are replaced, so a re-run is idempotent.

Quality is measured where the answer is known: the build's held-out facts of ``P`` (facts
the model never read when ``k3m embed`` ran with ``--facts train``) are ranked the same way;
the report gives precision@1 and hits@k next to always guessing the most frequent value.
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

import numpy as np

from etl.errors import InvalidValue, NotFound
from k3m.embedding.store import EmbeddingStore

HELDOUT_SPLITS = {"valid": (1,), "test": (2,), "all": (1, 2)}
# bulk reads return one collected row: a record per item costs ~10x more over Bolt
HAVING = "MATCH (i:Item)-[:HAS {property: $property}]->(:Value) RETURN collect(DISTINCT i.id) AS ids"
ITEMS = "MATCH (i:Item) RETURN collect([i.id, i.category]) AS items"
# per category: items, and items having the property (a few hundred rows, whatever the catalog)
CATEGORY_ITEMS = "MATCH (i:Item) RETURN i.category AS category, count(i) AS n"
CATEGORY_HAVING = ("MATCH (i:Item)-[:HAS {property: $property}]->(:Value) WITH DISTINCT i "
                   "RETURN i.category AS category, count(i) AS n")
# of a slice of the store's ids: the positions of those the graph has, in a category where the
# property applies, without a fact of it
LACKING = """
UNWIND $ids AS id
MATCH (i:Item {id: id})
WHERE i.category IN $categories
OPTIONAL MATCH (i)-[h:HAS {property: $property}]->()
WITH id, count(h) AS observed
WHERE observed = 0
RETURN collect(id) AS found
"""
WRITE = """
UNWIND $rows AS r
MATCH (i:Item {id: r.id})
OPTIONAL MATCH (i)-[h:HAS {property: $property}]->()
WITH i, r, count(h) AS observed
WHERE observed = 0
OPTIONAL MATCH (i)-[old:SUGGESTED_VALUE {property: $property, model: $model}]->()
DELETE old
WITH DISTINCT i, r
UNWIND r.s AS s
MATCH (v:Value {text: s.value})
CREATE (i)-[:SUGGESTED_VALUE {property: $property, score: s.score, rank: s.rank, model: $model, created: $created}]->(v)
RETURN count(*) AS n
"""


@dataclass(frozen=True)
class CompletionSettings:
    top_k: int = 3  # suggestions per item
    min_category_share: float = 0.5  # P applies to a category when this share of its items has P
    limit: int | None = None  # complete at most this many items (in graph order of ids)
    write: bool = True  # False = dry run: rank and report, write nothing
    write_batch: int = 1000  # items per transaction
    heldout: str = "test"  # held-out facts measured: valid | test | all
    prior: bool = True  # weigh in the values' train frequency, its weight chosen on the valid facts (Completer)
    score_chunk: int = 2048  # items scored at once (memory: chunk x values x H floats)
    scan: int = 20000  # store ids looked up in the graph at once (memory: this slice, not the catalog)


@dataclass
class Suggestion:
    item_id: str
    title: str | None
    category: str | None
    values: list[tuple[str, float]]  # (value, score: LPM distance less the weighed log prior), best first


@dataclass
class CompletionReport:
    property: str
    model_id: str
    candidate_values: int
    items_lacking: int  # lacking P in categories where P applies (and embedded)
    items_having: int  # graph items with at least one P fact
    items_in_graph: int
    items_suggested: int
    suggestions_written: int
    heldout_facts: int
    precision_at_1: float | None
    hits_at_k: float | None
    majority_precision_at_1: float | None  # always guessing the most frequent value
    prior_weight: float  # λ of the value prior in the score (0: the LPM distance alone)
    calibration_facts: int  # valid facts λ was chosen on (0: none, λ = 0)
    heldout: str  # the held-out split measured: valid | test | all
    heldout_seen_by_model: bool  # True when the embeddings read all facts (precision is then leaky)
    seconds: float
    examples: list[Suggestion] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def render(self) -> str:
        from kg.output import table

        def pct(x):
            return "n/a" if x is None else f"{100 * x:.1f}%"

        if self.items_lacking:
            head = (f"Completion of {self.property!r} with {self.model_id}: {self.items_suggested} of {self.items_lacking} "
                    f"items lacking it got suggestions ({self.suggestions_written} SUGGESTED_VALUE relationships written, "
                    f"{self.candidate_values} candidate values), {self.seconds:.1f} s")
        elif self.items_having == self.items_in_graph:
            head = (f"Nothing to complete: every item in the graph ({self.items_in_graph}) has {self.property!r}. "
                    f"The model's ranking is still measured on the held-out facts below.")
        else:
            head = (f"Nothing to complete: {self.items_having} of {self.items_in_graph} items have {self.property!r}, and "
                    f"no item lacking it is in a category where it applies (--min-category-share). The model's "
                    f"ranking is still measured on the held-out facts below.")
        lines = [
            head,
            f"Held-out facts ({self.heldout_facts}): precision@1 {pct(self.precision_at_1)}, hits@k {pct(self.hits_at_k)}; "
            f"most-frequent-value guess {pct(self.majority_precision_at_1)}"
            + ("  [WARNING: the model read these facts: --facts all]" if self.heldout_seen_by_model else ""),
            (f"Score: LPM distance − {self.prior_weight:g} · log P(value), the weight chosen on {self.calibration_facts} "
             f"valid facts" if self.calibration_facts else "Score: the LPM distance (no value prior)")
            + ("  [WARNING: precision includes the valid facts the weight was chosen on]"
               if self.calibration_facts and self.heldout != "test" else ""),
        ]
        if self.examples:
            rows = [{"id": s.item_id, "category": s.category, "title": s.title,
                     "suggested (score)": ", ".join(f"{v} ({d:.2f})" for v, d in s.values)} for s in self.examples]
            lines.append(table(rows))
        return "\n".join(lines)


class Completer:
    """LPM ranking of one property's values for items of a store, with the values' train
    frequency as a prior.

    The score is ``S − λ · log P(v)``: the LPM distance ``S = ‖c* + p − v‖`` less the log of
    the value's share among the property's train facts, weighed by ``λ`` (``prior_weight``).
    ``λ`` is chosen per property on the build's valid facts (held out from ``k3m embed
    --facts train`` like the test facts): the weight of a grid, from 0 (the LPM alone) to one
    so large the most frequent value always wins, whose precision@1 there is highest, the
    smallest on ties. Where the model knows a property no better than its most frequent
    value (fashion44k's 'Fabric': 66.3% against 69.3%), the ranking leans on the frequency
    instead of falling below it; where it knows better, λ stays small or 0. Fewer than
    ``MIN_CALIBRATION_FACTS`` valid facts: λ = 0. ``prior=False``: λ = 0, the LPM alone."""

    PRIOR_WEIGHTS = (0.0, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 1e6)
    MIN_CALIBRATION_FACTS = 20
    CALIBRATION_ITEMS = 20000  # valid items the weight is chosen on (a seeded sample beyond that)

    def __init__(self, store: EmbeddingStore, build, property_name: str, prior: bool = True):
        if property_name not in build.properties:
            import difflib

            close = difflib.get_close_matches(property_name, build.properties, n=3)
            raise NotFound(f"property {property_name!r} is not in the build's vocabulary ({len(build.properties)} "
                              f"properties{'; close: ' + ', '.join(close) if close else ''})")
        store.check_build(build)
        self.store, self.build = store, build
        self.property = build.properties.index(property_name)
        # the property's facts and their splits, read once (the table is the catalog's: one scan)
        triples, splits = np.asarray(build.triples), np.asarray(build.triple_split)
        mine = triples[:, 1] == self.property
        self._facts_of, self._split_of = triples[mine], splits[mine]
        train = self._facts_of[self._split_of == 0]
        values, counts = np.unique(train[:, 2], return_counts=True)
        self.values = values  # candidate value ids: the property's values among train facts (sorted)
        self.counts = counts
        self.log_prior = np.log(counts / max(1, counts.sum())).astype(np.float32) if len(counts) else np.zeros(0, np.float32)
        self.prior_weight = 0.0
        self.calibration_facts = 0  # valid facts the prior weight was chosen on
        if prior:
            self.prior_weight, self.calibration_facts = self._choose_prior_weight()

    def rank(self, rows: np.ndarray, k: int, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
        """(value ids [n, k], scores [n, k]) best (lowest score) first, for item rows of the
        store; the score is the LPM distance less ``prior_weight`` · log P(v) (the distance
        itself at weight 0; ``distances`` recovers it).

        numpy, not torch: the query commands and the service start without torch. The
        distance is the model's own (k3m.model.heads.lpm.lpm_distance), in float32."""
        k = min(k, len(self.values))
        if k < 1:
            return np.zeros((len(rows), 0), np.int64), np.zeros((len(rows), 0), np.float32)
        ids, scores = [], []
        for d in self._distance_chunks(rows, chunk):
            d = d - np.float32(self.prior_weight) * self.log_prior if self.prior_weight else d
            top = np.argpartition(d, k - 1, axis=1)[:, :k] if k < d.shape[1] else np.tile(np.arange(d.shape[1]), (len(d), 1))
            top_d = np.take_along_axis(d, top, axis=1)
            order = np.lexsort((top, top_d), axis=1)  # by score, ties by the lower value position
            top, top_d = np.take_along_axis(top, order, axis=1), np.take_along_axis(top_d, order, axis=1)
            ids.append(self.values[top])
            scores.append(top_d)
        if not ids:
            return np.zeros((0, k), np.int64), np.zeros((0, k), np.float32)
        return np.concatenate(ids), np.concatenate(scores)

    def distances(self, ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """The LPM distances ``S`` of ``rank``'s (ids, scores)."""
        if not self.prior_weight:
            return scores
        return scores + np.float32(self.prior_weight) * self.log_prior[np.searchsorted(self.values, ids)]

    def _distance_chunks(self, rows: np.ndarray, chunk: int):
        """LPM distances [n, V] to every candidate value, a slice of ``rows`` at a time."""
        norm = int(self.store.meta.get("lpm_norm", 2))
        p = np.asarray(self.store.property_vectors[self.property], dtype=np.float32)
        v = np.asarray(self.store.value_vectors[self.values], dtype=np.float32)
        # [step, V, H] floats at once: at most ~64 MB whatever the property's number of values
        step = max(1, min(chunk, (1 << 24) // max(1, v.size)))
        for start in range(0, len(rows), step):
            c = np.asarray(self.store.item_repr[rows[start:start + step]], dtype=np.float32)
            yield lpm_distance(c + p, v, norm)

    def _choose_prior_weight(self) -> tuple[float, int]:
        """(λ, valid facts it was chosen on): the grid's weight with the highest precision@1 on
        the valid facts, counted as ``heldout`` counts."""
        facts = self._facts((1,))
        if len(facts) < self.MIN_CALIBRATION_FACTS or len(self.values) < 2:
            return 0.0, 0
        items, item_of_fact = np.unique(facts[:, 0], return_inverse=True)
        if len(items) > self.CALIBRATION_ITEMS:
            keep = np.sort(np.random.default_rng(0).choice(len(items), self.CALIBRATION_ITEMS, replace=False))
            chosen = np.isin(item_of_fact, keep)
            facts, item_of_fact, items = facts[chosen], np.searchsorted(keep, item_of_fact[chosen]), items[keep]
        weights = np.asarray(self.PRIOR_WEIGHTS, np.float32)
        # [W, items] the first value at every weight (positions in self.values)
        first = np.concatenate([np.argmin(d[None] - weights[:, None, None] * self.log_prior, axis=2)
                                for d in self._distance_chunks(items, 2048)], axis=1)
        hits = [_items_hit(self.values[first[w]], item_of_fact, facts[:, 2]).sum() for w in range(len(weights))]
        return float(self.PRIOR_WEIGHTS[int(np.argmax(hits))]), int(len(facts))

    def _facts(self, splits: tuple[int, ...]) -> np.ndarray:
        """The property's facts of ``splits`` whose value is a candidate."""
        facts = self._facts_of[np.isin(self._split_of, splits)]
        return facts[np.isin(facts[:, 2], self.values)]  # values never seen in training cannot be ranked

    def heldout(self, splits: tuple[int, ...], k: int, chunk: int) -> tuple[int, float | None, float | None, float | None]:
        """(facts, precision@1, hits@k, majority precision@1) on held-out facts of the property."""
        facts = self._facts(splits)
        if not len(facts):
            return 0, None, None, None
        items, item_of_fact = np.unique(facts[:, 0], return_inverse=True)
        top, _ = self.rank(items, k, chunk)
        majority = np.full(len(items), self.values[np.argmax(self.counts)])
        hit1 = _items_hit(top[:, 0], item_of_fact, facts[:, 2]).mean()
        hitk = np.any([_items_hit(top[:, j], item_of_fact, facts[:, 2]) for j in range(top.shape[1])], axis=0).mean()
        base = _items_hit(majority, item_of_fact, facts[:, 2]).mean()
        return len(facts), float(hit1), float(hitk), float(base)


def _items_hit(guess: np.ndarray, item_of_fact: np.ndarray, fact_values: np.ndarray) -> np.ndarray:
    """bool [items]: is the item's guessed value (``guess[item]``) one of its held-out values.
    An item counts once, hit when any of its facts is."""
    hit = np.zeros(len(guess), bool)
    hit[item_of_fact[guess[item_of_fact] == fact_values]] = True
    return hit


def lpm_distance(shifted: np.ndarray, values: np.ndarray, norm: int = 2) -> np.ndarray:
    """``‖(c* + p) − v‖_norm`` for every row of ``shifted`` [n, H] against every value [V, H]."""
    diff = shifted[:, None, :] - values[None, :, :]
    if norm == 2:
        return np.sqrt(np.einsum("nvh,nvh->nv", diff, diff, dtype=np.float32))
    return np.linalg.norm(diff, ord=norm, axis=-1).astype(np.float32)


def lacking_items(db, property_name: str, min_share: float) -> list[tuple[str, str | None]]:
    """(id, category) of graph items without a ``property_name`` fact, in categories where
    at least ``min_share`` of the items have one; sorted by id. Reads the whole graph into
    Python lists: for small graphs and checks (``complete_attributes`` streams)."""
    return _coverage(db, property_name, min_share)[0]


def _coverage(db, property_name: str, min_share: float) -> tuple[list[tuple[str, str | None]], int, int]:
    """(lacking items as in :func:`lacking_items`, items having the property, items in the graph)."""
    having = set(db.run(HAVING, property=property_name)[0]["ids"])
    items = db.run(ITEMS)[0]["items"]
    total, with_p = Counter(), Counter()
    for item_id, category in items:
        total[category] += 1
        with_p[category] += item_id in having
    applies = {c for c in total if c is not None and with_p[c] >= min_share * total[c] and with_p[c] > 0}
    lacking = sorted((i, c) for i, c in items if i not in having and c in applies)
    return lacking, len(having), len(items)


def applicable_categories(db, property_name: str, min_share: float) -> tuple[list[str], int, int]:
    """(categories where ``property_name`` applies: at least ``min_share`` of their items have
    it, items having it, items in the graph), from per-category counts."""
    total = {r["category"]: r["n"] for r in db.run(CATEGORY_ITEMS)}
    with_p = {r["category"]: r["n"] for r in db.run(CATEGORY_HAVING, property=property_name)}
    applies = sorted(c for c, n in total.items() if c is not None and with_p.get(c, 0) >= min_share * n and with_p.get(c, 0) > 0)
    return applies, sum(with_p.values()), sum(total.values())


def lacking_rows(db, store: EmbeddingStore, property_name: str, categories: list[str], scan: int = 20000) -> np.ndarray:
    """int64 store rows of the graph's items lacking ``property_name`` in ``categories``, in
    id order; the store's ids are looked up a slice at a time (memory: the slice and the
    answer's rows, not the catalog)."""
    found = []
    for lo in range(0, len(store.ids), scan):
        part = store.ids[lo:lo + scan].tolist()
        position = {item_id: k for k, item_id in enumerate(part)}  # this slice's ids only
        at = db.run(LACKING, ids=part, categories=categories, property=property_name)[0]["found"]
        found.append(lo + np.fromiter((position[i] for i in at), np.int64, len(at)))
    rows = np.concatenate(found) if found else np.zeros(0, np.int64)
    return rows[np.argsort(store.ids[rows], kind="stable")]


def complete_attributes(db, store: EmbeddingStore, build, property_name: str,
                        settings: CompletionSettings = CompletionSettings(), examples: int = 5) -> CompletionReport:
    """Rank, write (unless dry run) and measure suggestions of ``property_name``. The items
    lacking it are ranked and written a chunk (``score_chunk``) at a time."""
    if settings.heldout not in HELDOUT_SPLITS:
        raise InvalidValue(f"heldout must be one of {sorted(HELDOUT_SPLITS)}, got {settings.heldout!r}")
    started = time.perf_counter()
    completer = Completer(store, build, property_name, prior=settings.prior)
    categories, having, in_graph = applicable_categories(db, property_name, settings.min_category_share)
    lacking = lacking_rows(db, store, property_name, categories, settings.scan) if categories else np.zeros(0, np.int64)
    todo = lacking[: settings.limit] if settings.limit is not None else lacking
    values = build.values
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    written, first = 0, []
    for lo in range(0, len(todo), settings.score_chunk):
        rows = todo[lo:lo + settings.score_chunk]
        top, dists = completer.rank(rows, settings.top_k, settings.score_chunk)
        suggestions = [(item_id, [(values[v], float(d)) for v, d in zip(top_n, dists_n)])
                       for item_id, top_n, dists_n in zip(store.ids[rows].tolist(), top.tolist(), dists.tolist())]
        if not first:
            first = suggestions[:examples]
        if settings.write:
            payload = [{"id": item_id, "s": [{"value": v, "score": d, "rank": r} for r, (v, d) in enumerate(vals, 1)]}
                       for item_id, vals in suggestions]
            for a in range(0, len(payload), settings.write_batch):
                batch = payload[a:a + settings.write_batch]
                written += db.write_transaction(lambda tx, b=batch: tx.run(
                    WRITE, rows=b, property=property_name, model=store.model_id, created=created).single()["n"])

    n_facts, p1, hk, base = completer.heldout(HELDOUT_SPLITS[settings.heldout], settings.top_k, settings.score_chunk)
    shown = []
    if examples and first:
        details = {r["id"]: r for r in db.run("UNWIND $ids AS id MATCH (i:Item {id: id}) RETURN i.id AS id, i.title AS title, "
                                              "i.category AS category", ids=[s[0] for s in first])}
        shown = [Suggestion(i, details.get(i, {}).get("title"), details.get(i, {}).get("category"), vals)
                 for i, vals in first]
    return CompletionReport(
        property=property_name, model_id=store.model_id, candidate_values=len(completer.values),
        items_lacking=len(lacking), items_having=having, items_in_graph=in_graph,
        items_suggested=len(todo), suggestions_written=written,
        heldout_facts=n_facts, precision_at_1=p1, hits_at_k=hk, majority_precision_at_1=base,
        prior_weight=completer.prior_weight, calibration_facts=completer.calibration_facts, heldout=settings.heldout,
        heldout_seen_by_model=store.meta.get("facts") == "all", seconds=time.perf_counter() - started, examples=shown,
    )


# -- command line ----------------------------------------------------------------------
def add_parser(sub) -> None:
    from k3m.query.connection import add_graph_arguments, add_store_arguments

    p = sub.add_parser("complete", help="suggest values for items lacking a property (LPM), report precision@1",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--property", required=True, help="the property to complete, e.g. baseColour")
    p.add_argument("--top-k", type=int, default=CompletionSettings.top_k, help="suggestions per item (default 3)")
    p.add_argument("--limit", type=int, help="complete at most this many items")
    p.add_argument("--min-category-share", type=float, default=CompletionSettings.min_category_share,
                   help="P applies to a category when this share of its items has P (default 0.5)")
    p.add_argument("--heldout", choices=sorted(HELDOUT_SPLITS), default=CompletionSettings.heldout,
                   help="held-out facts to measure precision on (default test)")
    p.add_argument("--dry-run", action="store_true", help="rank and report only; write nothing")
    p.add_argument("--no-prior", action="store_true",
                   help="rank by the LPM distance alone (default: less the weighed log frequency of the value, "
                        "its weight chosen on the valid facts)")
    add_store_arguments(p)
    add_graph_arguments(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from etl.catalog_build import CatalogBuild
    from k3m.query.connection import apply_data_dir, locate_store, open_graph
    from kg.output import dumps

    apply_data_dir(args.data_dir)
    settings = CompletionSettings(top_k=args.top_k, min_category_share=args.min_category_share, limit=args.limit,
                                  write=not args.dry_run, heldout=args.heldout, prior=not args.no_prior)
    with open_graph(args.database, args.build) as db:
        store = locate_store(db, args.build, args.model_id, required=True)
        build = CatalogBuild.open(store.path.parent.parent)
        report = complete_attributes(db, store, build, args.property, settings)
    print(dumps(report.to_dict()) if args.json else report.render())
    return 0
