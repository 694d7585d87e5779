"""The product KG as RDF: an Oxigraph store on disk, used through rdflib (oxrdflib).

``load_rdf`` writes N-Triples for the build (IRIs in :mod:`kg.rdf_iris`) straight into
Oxigraph's bulk loader (~10x rdflib's triple-by-triple path) in a fresh directory that
replaces the previous store only when complete, so a reader never sees half a load and a
second load is the same store again. Layout: ``<data_dir>/rdf/<build name>-<hash of the
build path>/`` holding ``store/`` (Oxigraph) and ``meta.json`` (build, manifest sha256, base
IRI, counts).

Sync: when the build was updated in place (`k3m import --update`, ``BUILD/sync.json``) and the
store holds the previous version (meta.json's ``manifest_sha256`` is sync.json's
``previous_manifest_sha256``), only the diff is applied, in place: meta.json says
``applying`` and lists the items to redo (``pending``) first; the triples of those items go;
the current triples of the ones still in the build go in; vocabulary IRIs no item uses any
more lose their type and label, newly used ones gain them; meta.json is then rewritten
without ``applying``. Every step is idempotent, so a load killed at any point and run again,
even after the build was updated once more, redoes ``pending`` plus the new diff and ends in
the same store as a full load of the build. A store that already holds this build is left
alone. Anything else (a store two versions behind, another base IRI) is the full rewrite.
Readers see the store between the two versions while a sync runs.

What goes in, per build:

* every triple ``<item> <property> <value>`` (all splits: the held-out split lives in the build),
* per item: ``rdf:type k3m:Item``, ``k3m:itemId``, ``rdfs:label`` title, ``k3m:category``,
  ``k3m:group``, ``k3m:split``, ``k3m:hasImage`` (absent fields give no triple),
* per property, value and category some item uses: its ``rdf:type`` and ``rdfs:label`` (an
  updated build's vocabularies are append-only and may hold names no item has any more).

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
from typing import Callable, Iterator

import numpy as np

from etl.atomic import directory_lock, write_text, writing_directory
from etl.errors import UserError
from etl.sync import current_sync, manifest_sha256
from kg.paths import data_dir as default_data_dir
from kg.rdf_iris import DEFAULT_BASE_IRI, RDF, RDFS, XSD, Namespaces

EXPORT_FORMATS = {"turtle": "TURTLE", "ntriples": "N_TRIPLES"}
_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r"})


class RdfStoreError(UserError, RuntimeError):
    """No RDF store for this build, or one that cannot be read."""


class SparqlQueryError(UserError, ValueError):
    """The SPARQL text does not parse."""


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
    mode: str = "full"  # full: rewritten | sync: sync.json applied in place | current: held this build already
    items_removed: int = 0  # sync: items no longer in the build
    items_rewritten: int = 0  # sync: changed and added items, their triples (re)written
    triples_deleted: int = 0
    triples_inserted: int = 0
    vocabulary_added: int = 0  # sync: property/value/category IRIs typed and labelled anew
    vocabulary_removed: int = 0  # sync: those no item uses any more

    @property
    def triples_per_s(self) -> float:
        written = self.triples if self.mode == "full" else self.triples_inserted
        return written / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "triples_per_s": round(self.triples_per_s, 1)}


def store_dir(build, data_dir: Path | None = None) -> Path:
    """Where the RDF store of ``build`` lives (one per build directory)."""
    key = hashlib.sha1(str(Path(build.path).resolve()).encode()).hexdigest()[:8]
    return Path(data_dir or default_data_dir()) / "rdf" / f"{Path(build.path).name}-{key}"


def load_rdf(build, target: Path | None = None, settings: RdfSettings = RdfSettings(),
             progress: Callable[[int, int], None] | None = None) -> RdfLoadReport:
    """Write ``build`` into the Oxigraph store at ``target`` (default :func:`store_dir`): the
    build's sync.json applied in place when the store holds the previous version, nothing
    when it holds this one, else a fresh store (see the module docstring). ``progress(done,
    total)``: items written, after each chunk."""
    ns = Namespaces(settings.base_iri)  # a bad base IRI fails before anything waits or writes
    target = Path(target or store_dir(build))
    # one writer of a store at a time (Oxigraph's own lock would fail the second with a raw error)
    with directory_lock(target, "RDF load"):
        return _load_rdf(build, target, ns, settings, progress or (lambda done, total: None))


def _load_rdf(build, target: Path, ns: Namespaces, settings: RdfSettings, progress) -> RdfLoadReport:
    started = time.perf_counter()
    current = manifest_sha256(build.path)
    meta = _meta_or_none(target)
    if meta is not None and meta.get("base_iri") == ns.base:
        if meta.get("manifest_sha256") == current and "applying" not in meta:
            return RdfLoadReport(str(target), meta["triples"], meta["pkg_triples"], time.perf_counter() - started,
                                 mode="current")
        dirty = _dirty_items(meta, current_sync(build), current)
        if dirty is not None:
            counts = _apply_sync(build, ns, settings, target, meta, dirty, current, progress)
            return RdfLoadReport(str(target), seconds=time.perf_counter() - started, mode="sync", **counts)
    with writing_directory(target) as partial:  # the previous store goes only after the swap
        _write_store(build, ns, settings, partial, progress)
        meta = json.loads((partial / "meta.json").read_text())
    return RdfLoadReport(str(target), meta["triples"], meta["pkg_triples"], time.perf_counter() - started)


def _write_store(build, ns: Namespaces, settings: RdfSettings, partial: Path, progress) -> None:
    import pyoxigraph as ox

    store = ox.Store(str(partial / "store"))
    triples, total = 0, build.num_items
    # items per chunk: the vocabulary's, then the items'
    sizes = [0, *(min(settings.chunk_items, total - lo) for lo in range(0, total, settings.chunk_items))]
    # The bulk loader releases the GIL: the next chunk is written while this one loads.
    # lenient skips Oxigraph's IRI re-validation (~10% of its time): every IRI here is a
    # checked base plus percent-encoding and every literal is escaped by _literal.
    with ThreadPoolExecutor(max_workers=1) as loader:
        pending, done = None, 0
        for (chunk, count), size in zip(ntriples_chunks(build, ns, settings.chunk_items), sizes):
            if pending is not None:
                pending[0].result()
                progress(pending[1], total)
            done += size
            pending = (loader.submit(store.bulk_load, chunk, ox.RdfFormat.N_TRIPLES, lenient=True), done)
            triples += count
        if pending is not None:
            pending[0].result()
            progress(pending[1], total)
    store.flush()
    del store  # closes RocksDB before the directory moves
    (partial / "meta.json").write_text(json.dumps(_meta(build, ns, triples), indent=2))


def _meta(build, ns: Namespaces, triples: int) -> dict:
    return {
        "build": str(Path(build.path).resolve()),
        "manifest_sha256": manifest_sha256(build.path),
        "base_iri": ns.base,
        "triples": triples,
        "pkg_triples": int(len(build.triples)),
    }


def _meta_or_none(target: Path) -> dict | None:
    try:
        return json.loads((target / "meta.json").read_text())
    except (OSError, ValueError):
        return None


def _dirty_items(meta: dict, sync: dict | None, current: str) -> list[str] | None:
    """Ids of the items to rewrite or remove, when the store holds the version sync.json
    starts from or a sync was cut short (even if the build was updated again since: what it
    still had to do is in meta.json's ``pending``); None: only a full rewrite is right."""
    if sync is None:
        return None
    base = meta.get("applying", meta.get("manifest_sha256"))
    if base not in (sync["previous_manifest_sha256"], current):
        return None
    return sorted({*meta.get("pending", ()), *sync["removed"], *sync["changed"], *sync["added"]})


def _apply_sync(build, ns: Namespaces, settings: RdfSettings, target: Path, meta: dict, dirty: list[str],
                current: str, progress) -> dict:
    import pyoxigraph as ox

    # from here on a rerun resumes: meta.json says what is left to do
    write_text(target / "meta.json", json.dumps({**meta, "applying": current, "pending": dirty}, indent=2))
    index = {item_id: k for k, item_id in enumerate(build.items["item_id"].tolist())}
    rewritten = sorted(index[item_id] for item_id in dirty if item_id in index)
    counts = dict(items_removed=len(dirty) - len(rewritten), items_rewritten=len(rewritten), triples_inserted=0)
    store = ox.Store(str(target / "store"))
    try:
        # an item's triples all have it as subject: clearing them makes a rerun start clean
        counts["triples_deleted"] = sum(_remove_subject(store, ox.NamedNode(ns.item(item_id))) for item_id in dirty)
        progress(0, len(rewritten))
        done = 0
        for chunk, count in ntriples_chunks(build, ns, settings.chunk_items, items=rewritten, vocabulary=False):
            store.load(chunk, ox.RdfFormat.N_TRIPLES, lenient=True)  # one transaction per chunk
            counts["triples_inserted"] += count
            done = min(done + settings.chunk_items, len(rewritten))
            progress(done, len(rewritten))
        wanted = _vocabulary(build, ns)
        a = ox.NamedNode(RDF + "type")
        present = {quad.subject.value for kind in _vocabulary_kinds(ns)
                   for quad in store.quads_for_pattern(None, a, ox.NamedNode(kind), ox.DefaultGraph())}
        stale = present - wanted.keys()
        counts["triples_deleted"] += sum(_remove_subject(store, ox.NamedNode(iri)) for iri in stale)
        missing = [lines for iri, lines in wanted.items() if iri not in present]
        store.load("".join(missing).encode(), ox.RdfFormat.N_TRIPLES, lenient=True)
        counts.update(triples_inserted=counts["triples_inserted"] + 2 * len(missing),
                      vocabulary_added=len(missing), vocabulary_removed=len(stale))
        store.flush()
        counts["triples"] = len(store)
    finally:
        del store  # closes RocksDB
    finished = _meta(build, ns, counts["triples"])
    counts["pkg_triples"] = finished["pkg_triples"]
    write_text(target / "meta.json", json.dumps(finished, indent=2))
    return counts


def _remove_subject(store, subject) -> int:
    import pyoxigraph as ox

    quads = list(store.quads_for_pattern(subject, None, None, ox.DefaultGraph()))
    for quad in quads:
        store.remove(quad)
    return len(quads)


def _vocabulary_kinds(ns: Namespaces) -> tuple[str, str, str]:
    """The rdf:type of property, value and category IRIs."""
    return RDF + "Property", ns.term("Value"), ns.term("Category")


def _vocabulary(build, ns: Namespaces) -> dict[str, str]:
    """IRI -> its type and label N-Triples, for every property, value and category in use."""
    a, label = _iri(RDF + "type"), _iri(RDFS + "label")
    lines = {}
    for names, make, kind in zip(build.used_vocabulary(), (ns.property, ns.value, ns.category), _vocabulary_kinds(ns)):
        kind = _iri(kind)
        for name in names:
            iri = make(name)
            lines[iri] = f"<{iri}> {a} {kind} .\n<{iri}> {label} {_literal(name)} .\n"
    return lines


def ntriples_chunks(build, ns: Namespaces, chunk_items: int, items=None,
                    vocabulary: bool = True) -> Iterator[tuple[bytes, int]]:
    """(N-Triples bytes, triple count) for the vocabulary in use, then for items in chunks;
    ``items``: only these item indices (sorted), ``vocabulary=False``: no vocabulary chunk."""
    if vocabulary:
        head = _vocabulary(build, ns)
        yield "".join(head.values()).encode(), 2 * len(head)

    a, label = _iri(RDF + "type"), _iri(RDFS + "label")
    prop_iris = [_iri(ns.property(p)) for p in build.properties]
    value_iris = [_iri(ns.value(v)) for v in build.values]
    triples = np.asarray(build.triples)
    offsets = build.item_triple_offsets
    item_class = _iri(ns.term("Item"))
    p_id, p_cat, p_group, p_split, p_image = (_iri(ns.term(t)) for t in ("itemId", "category", "group", "split", "hasImage"))
    booleans = {True: f'"true"^^<{XSD}boolean>', False: f'"false"^^<{XSD}boolean>'}
    category_of = {name: _iri(ns.category(name)) for name in build.categories}
    frame = build.items
    columns = list(zip(
        frame["item_id"].tolist(), frame["title"].tolist(), frame["category"].tolist(),
        frame["group"].tolist(), frame["split"].tolist(), frame["has_image"].tolist(),
    ))
    indices = np.arange(len(columns)) if items is None else np.asarray(items, dtype=np.int64)
    for lo in range(0, len(indices), chunk_items):
        chunk = indices[lo:lo + chunk_items]
        lines, count = [], 0
        item_iris = []
        for item_id, title, category, group, split, has_image in (columns[k] for k in chunk.tolist()):
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
        # the chunk's triple rows: an item's rows are contiguous (triples are sorted), the items need not be
        starts, lengths = offsets[chunk], offsets[chunk + 1] - offsets[chunk]
        local = np.repeat(np.arange(len(chunk)), lengths)  # row -> its item's position in the chunk
        first = np.cumsum(lengths) - lengths  # where each item's rows begin among the chunk's
        rows = triples[starts[local] + np.arange(len(local)) - first[local]]
        lines.extend(f"{item_iris[i]} {prop_iris[p]} {value_iris[v]} .\n"
                     for i, p, v in zip(local.tolist(), rows[:, 1].tolist(), rows[:, 2].tolist()))
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
