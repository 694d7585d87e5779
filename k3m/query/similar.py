"""`k3m query similar ITEM_ID`: the items most similar to an item, under graph constraints.

    k3m query similar 15970 --k 10
    k3m query similar 15970 --same-brand --category Shirts
    k3m query similar 15970 --where baseColour=Navy\\ Blue --no-image --json

Python::

    from k3m.query import ItemFilter, similar_items
    result = similar_items(db, "15970", k=10, item_filter=ItemFilter(same=("brandName",)), store=store)
    print(result.render())
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

from etl.errors import InvalidValue, NotFound
from k3m.embedding.store import EmbeddingStore
from k3m.query.patterns import ItemFilter
from k3m.query.vector_search import STRATEGIES, VectorSearch, VectorSearchError

PROPERTIES = "MATCH (p:Property) RETURN collect(p.name) AS names"
HAS_EMBEDDING = "MATCH (q:Item {id: $id}) RETURN q.embedding IS NOT NULL AS has"
DISPLAY = """
UNWIND $ids AS id
MATCH (i:Item {id: id})
OPTIONAL MATCH (i)-[h:HAS]->(v:Value) WHERE h.property IN $show
RETURN i.id AS id, i.title AS title, i.category AS category, i.has_image AS has_image,
       collect([h.property, v.text]) AS shown
"""


@dataclass
class SimilarItem:
    id: str
    score: float  # cosine similarity of the embeddings
    title: str | None
    category: str | None
    has_image: bool | None
    properties: dict = field(default_factory=dict)  # the --show properties' values


@dataclass
class SimilarResult:
    item: SimilarItem  # the query item (score 1.0)
    hits: list[SimilarItem]
    constraint: str
    strategy: str
    model_id: str | None
    milliseconds: float

    def to_dict(self) -> dict:
        return asdict(self)

    def render(self) -> str:
        from kg.output import table

        head = (f"Items similar to {self.item.id} {self.item.title or '(no title)'!r} [{self.item.category or '-'}]"
                f" — {self.constraint}; {self.strategy} search, {self.milliseconds:.0f} ms")
        shown = sorted({p for h in self.hits for p in h.properties})
        rows = [{"#": n, "id": h.id, "score": h.score, "category": h.category, "title": h.title,
                 **{p: h.properties.get(p) for p in shown}} for n, h in enumerate(self.hits, 1)]
        return head + "\n" + table(rows, ["#", "id", "score", "category", "title", *shown])


def similar_items(db, item_id: str, k: int = 10, item_filter: ItemFilter = ItemFilter(),
                  store: EmbeddingStore | None = None, strategy: str = "auto", show: tuple[str, ...] = (),
                  search: VectorSearch | None = None) -> SimilarResult:
    """Top-``k`` items by cosine similarity to ``item_id`` among those meeting ``item_filter``.

    Pass a long-lived ``search`` to reuse its norms between calls (benchmarks, services).
    """
    from k3m.query.connection import require_item

    started = time.perf_counter()
    require_item(db, item_id)
    search = search or VectorSearch(db, store, strategy)
    if search.strategy not in ("client", "ann") and not db.run(HAS_EMBEDDING, id=str(item_id))[0]["has"]:
        raise VectorSearchError(f"item {item_id!r} has no embedding in database {db.database!r}: embed the build "
                                f"(`k3m embed --checkpoint RUN BUILD`) or pass --build BUILD to search its embeddings")
    hits = search.similar(str(item_id), k, item_filter)
    details = {r["id"]: r for r in db.run(DISPLAY, ids=[str(item_id)] + [h.id for h in hits], show=list(show))}

    def item(item_id: str, score: float) -> SimilarItem:
        r = details[item_id]
        shown = {p: v for p, v in r["shown"] if p is not None}
        return SimilarItem(item_id, score, r["title"], r["category"], r["has_image"], shown)

    result = [item(h.id, h.score) for h in hits if h.id in details]  # an id the graph lacks is dropped
    return SimilarResult(item(str(item_id), 1.0), result, item_filter.describe(), search.strategy, search.model_id,
                         (time.perf_counter() - started) * 1000)


# -- command line ----------------------------------------------------------------------
def add_parser(sub) -> None:
    from k3m.query.connection import add_graph_arguments, add_store_arguments

    p = sub.add_parser("similar", help="items most similar to an item, optionally under graph constraints",
                       description=__doc__.split("\n\n")[0] + " Constraints combine (all must hold).")
    p.add_argument("item_id", help="the item's id (as in the catalog)")
    p.add_argument("--k", type=int, default=10, help="how many items (default 10)")
    p.add_argument("--same-brand", action="store_true",
                   help="same brand as the item (the graph's one property named like 'brand'; else use --same)")
    p.add_argument("--same", action="append", default=[], metavar="PROPERTY", help="same value of PROPERTY as the item (repeatable)")
    p.add_argument("--where", action="append", default=[], metavar="PROPERTY=VALUE", help="must have this fact (repeatable)")
    p.add_argument("--category", help="in this category")
    image = p.add_mutually_exclusive_group()
    image.add_argument("--no-image", dest="has_image", action="store_const", const=False, help="only items lacking an image")
    image.add_argument("--with-image", dest="has_image", action="store_const", const=True, help="only items with an image")
    p.add_argument("--show", action="append", default=[], metavar="PROPERTY", help="also print this property's values")
    p.add_argument("--strategy", choices=STRATEGIES, default="auto",
                   help="auto (default): the server's native vector index if it has one, else the build's "
                        "FAISS index if it has one (ann), else exact search over the build's matrix (client)")
    add_store_arguments(p)
    add_graph_arguments(p)
    p.set_defaults(func=run)


def parse_where(specs: list[str]) -> tuple[tuple[str, str], ...]:
    pairs = []
    for spec in specs:
        prop, sep, value = spec.partition("=")
        if not sep or not prop:
            raise InvalidValue(f"--where expects PROPERTY=VALUE, got {spec!r}")
        pairs.append((prop, value))
    return tuple(pairs)


def brand_property(names: list[str], facts: dict[str, int] | None = None) -> str:
    """The catalog's brand property: the one property whose name says 'brand'.

    Several such names (fashion44k: ``brandName`` on every item, ``Brand`` and ``Brand Fit
    Name`` among a few items' attributes): the one named exactly so (``brand``,
    ``brandName``), else, given ``facts`` (facts per property), the one with the most facts
    when it has at least twice as many as any other."""
    brands = [n for n in names if "brand" in n.lower()]
    exact = [n for n in brands if n.lower().replace("_", "").replace(" ", "") in ("brand", "brandname")]
    if len(exact) == 1 or len(brands) == 1:
        return (exact or brands)[0]
    if not brands:
        raise NotFound("--same-brand: no property of this graph is named like 'brand'; use --same PROPERTY")
    if facts:
        ranked = sorted(exact or brands, key=lambda n: facts.get(n, 0), reverse=True)
        if facts.get(ranked[0], 0) >= 2 * max(1, facts.get(ranked[1], 0)):
            return ranked[0]
    raise NotFound(f"--same-brand: several properties are named like 'brand' ({', '.join(sorted(brands))}); "
                      f"use --same PROPERTY")


def property_facts(build) -> dict[str, int]:
    """Facts per property name of a catalog build (for :func:`brand_property`)."""
    import numpy as np

    counts = np.bincount(np.asarray(build.triples)[:, 1], minlength=len(build.properties))
    return dict(zip(build.properties, counts.tolist()))


def check_properties(names: list[str], wanted: list[str], database: str) -> None:
    """A property the graph does not have would silently match nothing."""
    import difflib

    known = set(names)
    for name in wanted:
        if name not in known:
            close = difflib.get_close_matches(name, names, n=3)
            hint = f" (close: {', '.join(close)})" if close else ""
            raise NotFound(f"property {name!r} is not in database {database!r}{hint}")


def _brand(names: list[str], store: EmbeddingStore | None) -> str:
    """brand_property, with the facts per property of the embeddings' build when there is one."""
    try:
        return brand_property(names)
    except LookupError:
        if store is None:
            raise
        from etl.catalog_build import CatalogBuild

        return brand_property(names, property_facts(CatalogBuild.open(store.path.parent.parent)))


def run(args) -> int:
    from k3m.query.connection import apply_data_dir, locate_store, open_graph
    from kg.output import dumps

    apply_data_dir(args.data_dir)
    equals = parse_where(args.where)
    with open_graph(args.database, args.build) as db:
        names = db.run(PROPERTIES)[0]["names"]
        store = locate_store(db, args.build, args.model_id, required=args.strategy == "client")
        same = ([_brand(names, store)] if args.same_brand else []) + args.same
        check_properties(names, same + [p for p, _ in equals] + args.show, db.database)
        item_filter = ItemFilter(same=tuple(same), equals=equals, category=args.category, has_image=args.has_image)
        result = similar_items(db, args.item_id, args.k, item_filter, store, args.strategy, tuple(args.show))
    print(dumps(result.to_dict()) if args.json else result.render())
    return 0
