"""The product KG as RDF: an Oxigraph store on disk, used through rdflib (oxrdflib).

``load_rdf`` writes N-Triples for the build (IRIs in :mod:`kg.rdf_iris`) straight into
Oxigraph's bulk loader (~10x rdflib's triple-by-triple path) in a fresh directory that
replaces the previous store only when complete, so a reader never sees half a load and a
second load is the same store again. Layout: ``<data_dir>/rdf/<build name>-<hash of the
build path>/`` holding ``store/`` (Oxigraph) and ``meta.json`` (build, base IRI, counts).

What goes in, per build:

* every triple ``<item> <property> <value>`` (all splits: the held-out split lives in the build),
* per item: ``rdf:type k3m:Item``, ``k3m:itemId``, ``rdfs:label`` title, ``k3m:category``,
  ``k3m:group``, ``k3m:split``, ``k3m:hasImage`` (absent fields give no triple),
* per property, value and category: its ``rdf:type`` and ``rdfs:label``.

PKG triples are exactly those whose predicate is typed ``rdf:Property``::

    SELECT (COUNT(*) AS ?n) WHERE { ?p a rdf:Property . ?i ?p ?v }
"""
from __future__ import annotations

import hashlib
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from etl.atomic import writing_directory
from kg.paths import data_dir as default_data_dir
from kg.rdf_iris import DEFAULT_BASE_IRI, RDF, RDFS, XSD, Namespaces

EXPORT_FORMATS = {"turtle": "TURTLE", "ntriples": "N_TRIPLES"}
_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r"})


class RdfStoreError(RuntimeError):
    """No RDF store for this build, or one that cannot be read."""

    exit_code = 2  # `k3m kg load BUILD --rdf` fixes it


class SparqlQueryError(ValueError):
    """The SPARQL text does not parse."""

    exit_code = 2


@dataclass(frozen=True)
class RdfSettings:
    base_iri: str = DEFAULT_BASE_IRI
    chunk_items: int = 10_000  # items per N-Triples chunk handed to the bulk loader (bounds memory)


@dataclass
class RdfLoadReport:
    path: str
    triples: int  # everything in the store
    pkg_triples: int  # <item> <property> <value> triples == the build's triples
    seconds: float

    @property
    def triples_per_s(self) -> float:
        return self.triples / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "triples_per_s": round(self.triples_per_s, 1)}


def store_dir(build, data_dir: Path | None = None) -> Path:
    """Where the RDF store of ``build`` lives (one per build directory)."""
    key = hashlib.sha1(str(Path(build.path).resolve()).encode()).hexdigest()[:8]
    return Path(data_dir or default_data_dir()) / "rdf" / f"{Path(build.path).name}-{key}"


def load_rdf(build, target: Path | None = None, settings: RdfSettings = RdfSettings()) -> RdfLoadReport:
    """Write ``build`` into a fresh Oxigraph store at ``target`` (default :func:`store_dir`)."""
    started = time.perf_counter()
    ns = Namespaces(settings.base_iri)
    target = Path(target or store_dir(build))
    with writing_directory(target) as partial:  # the previous store goes only after the swap
        _write_store(build, ns, settings, partial)
        meta = json.loads((partial / "meta.json").read_text())
    return RdfLoadReport(str(target), meta["triples"], meta["pkg_triples"], time.perf_counter() - started)


def _write_store(build, ns: Namespaces, settings: RdfSettings, partial: Path) -> None:
    import pyoxigraph as ox

    store = ox.Store(str(partial / "store"))
    triples = 0
    # The bulk loader releases the GIL: the next chunk is written while this one loads.
    # lenient skips Oxigraph's IRI re-validation (~10% of its time): every IRI here is a
    # checked base plus percent-encoding and every literal is escaped by _literal.
    with ThreadPoolExecutor(max_workers=1) as loader:
        pending = None
        for chunk, count in ntriples_chunks(build, ns, settings.chunk_items):
            if pending is not None:
                pending.result()
            pending = loader.submit(store.bulk_load, chunk, ox.RdfFormat.N_TRIPLES, lenient=True)
            triples += count
        if pending is not None:
            pending.result()
    store.flush()
    del store  # closes RocksDB before the directory moves
    meta = {
        "build": str(Path(build.path).resolve()),
        "manifest_sha256": hashlib.sha256((Path(build.path) / "manifest.json").read_bytes()).hexdigest(),
        "base_iri": ns.base,
        "triples": triples,
        "pkg_triples": int(len(build.triples)),
    }
    (partial / "meta.json").write_text(json.dumps(meta, indent=2))


def ntriples_chunks(build, ns: Namespaces, chunk_items: int) -> Iterator[tuple[bytes, int]]:
    """(N-Triples bytes, triple count) for the vocabularies, then for items in chunks."""
    prop_iris = [_iri(ns.property(p)) for p in build.properties]
    value_iris = [_iri(ns.value(v)) for v in build.values]
    category_iris = [_iri(ns.category(c)) for c in build.categories]
    a, label = _iri(RDF + "type"), _iri(RDFS + "label")
    head = []
    for iris, names, kind in (
        (prop_iris, build.properties, _iri(RDF + "Property")),
        (value_iris, build.values, _iri(ns.term("Value"))),
        (category_iris, build.categories, _iri(ns.term("Category"))),
    ):
        for iri, name in zip(iris, names):
            head.append(f"{iri} {a} {kind} .\n{iri} {label} {_literal(name)} .\n")
    yield "".join(head).encode(), 2 * len(head)

    items = build.items
    triples = np.asarray(build.triples)
    offsets = build.item_triple_offsets
    item_class = _iri(ns.term("Item"))
    p_id, p_cat, p_group, p_split, p_image = (_iri(ns.term(t)) for t in ("itemId", "category", "group", "split", "hasImage"))
    booleans = {True: f'"true"^^<{XSD}boolean>', False: f'"false"^^<{XSD}boolean>'}
    category_of = {name: iri for name, iri in zip(build.categories, category_iris)}
    columns = list(zip(
        items["item_id"].tolist(), items["title"].tolist(), items["category"].tolist(),
        items["group"].tolist(), items["split"].tolist(), items["has_image"].tolist(),
    ))
    for lo in range(0, len(columns), chunk_items):
        hi = min(lo + chunk_items, len(columns))
        lines, count = [], 0
        item_iris = []
        for item_id, title, category, group, split, has_image in columns[lo:hi]:
            s = _iri(ns.item(item_id))
            item_iris.append(s)
            lines.append(f"{s} {a} {item_class} .\n{s} {p_id} {_literal(item_id)} .\n"
                         f"{s} {p_split} {_literal(split)} .\n{s} {p_image} {booleans[bool(has_image)]} .\n")
            count += 4
            if isinstance(title, str):
                lines.append(f"{s} {label} {_literal(title)} .\n")
                count += 1
            if isinstance(category, str):
                lines.append(f"{s} {p_cat} {category_of[category]} .\n")
                count += 1
            if isinstance(group, str):
                lines.append(f"{s} {p_group} {_literal(group)} .\n")
                count += 1
        rows = triples[offsets[lo]:offsets[hi]]
        local = (rows[:, 0] - lo).tolist()
        lines.extend(f"{item_iris[i]} {prop_iris[p]} {value_iris[v]} .\n"
                     for i, p, v in zip(local, rows[:, 1].tolist(), rows[:, 2].tolist()))
        yield "".join(lines).encode(), count + len(rows)


def open_rdf(path: Path, base_iri: str | None = None):
    """The store at ``path`` (a :func:`store_dir`) as a read-only rdflib Graph on its default
    graph, with the KG prefixes bound (``k3m:``, ``item:``, ``prop:``, ``val:``, ``cat:``)."""
    import pyoxigraph as ox
    import rdflib
    from oxrdflib import OxigraphStore
    from rdflib.graph import DATASET_DEFAULT_GRAPH_ID

    meta = read_meta(path)
    graph = rdflib.Graph(
        store=OxigraphStore(store=ox.Store.read_only(str(Path(path) / "store"))),
        identifier=DATASET_DEFAULT_GRAPH_ID,
    )
    for prefix, namespace in Namespaces(base_iri or meta["base_iri"]).prefixes().items():
        graph.bind(prefix, namespace, override=True)
    return graph


def read_meta(path: Path) -> dict:
    meta = Path(path) / "meta.json"
    if not meta.is_file():
        raise RdfStoreError(f"{path}: no RDF store here; run `k3m kg load BUILD --rdf` first")
    return json.loads(meta.read_text())


def sparql(graph, query: str, bindings: dict | None = None):
    """Run a SPARQL query (Oxigraph evaluates it natively); an rdflib Result.

    ``bindings`` maps variable names to rdflib terms (``URIRef``/``Literal``): values reach
    the query as terms, never as query text. Oxigraph binds only projected variables, so
    every bound variable must appear in the SELECT clause.
    """
    try:
        return graph.query(query, initBindings=bindings or {})
    except SyntaxError as exc:  # pyoxigraph's parser
        raise SparqlQueryError(f"the SPARQL query does not parse: {exc}") from None


def export_rdf(path: Path, out: Path, fmt: str) -> None:
    """Dump the store's triples as ``turtle`` (with the KG prefixes) or ``ntriples``."""
    import pyoxigraph as ox

    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"format must be one of {sorted(EXPORT_FORMATS)}, got {fmt!r}")
    meta = read_meta(path)
    store = ox.Store.read_only(str(Path(path) / "store"))
    rdf_format = getattr(ox.RdfFormat, EXPORT_FORMATS[fmt])
    prefixes = Namespaces(meta["base_iri"]).prefixes() if fmt == "turtle" else None
    store.dump(str(out), rdf_format, from_graph=ox.DefaultGraph(), prefixes=prefixes)


def _iri(iri: str) -> str:
    return f"<{iri}>"


def _literal(text: str) -> str:
    return f'"{text.translate(_ESCAPES)}"'
