"""The Oxigraph RDF store: counts agree with the build, exact round trips, exports, reloads."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pyoxigraph as ox
import pytest
import rdflib

from etl.catalog_build import CatalogBuild
from kg.rdf_iris import Namespaces
from kg.rdf_store import RdfStoreError, _literal, export_rdf, load_rdf, open_rdf, read_meta, sparql, store_dir

PKG_COUNT = "SELECT (COUNT(*) AS ?n) WHERE { ?p a rdf:Property . ?i ?p ?v }"


@pytest.fixture(scope="module")
def slice_store(fashion_slice_build, tmp_path_factory):
    build = CatalogBuild.open(fashion_slice_build)
    report = load_rdf(build, store_dir(build, tmp_path_factory.mktemp("rdf-data")))
    return build, report


def _count(graph, query: str) -> int:
    return int(next(iter(sparql(graph, query)))[0])


def test_sparql_triple_count_agrees_with_the_build(slice_store):
    build, report = slice_store
    graph = open_rdf(report.path)
    assert report.pkg_triples == len(build.triples)
    assert _count(graph, PKG_COUNT) == len(build.triples)
    assert _count(graph, "SELECT (COUNT(*) AS ?n) WHERE { ?s ?p ?o }") == report.triples
    assert _count(graph, "SELECT (COUNT(?i) AS ?n) WHERE { ?i a k3m:Item }") == build.num_items
    assert _count(graph, "SELECT (COUNT(?v) AS ?n) WHERE { ?v a k3m:Value }") == len(build.values)


def test_every_item_pair_round_trips(slice_store):
    build, report = slice_store
    graph = open_rdf(report.path)
    rows = sparql(graph, """
        SELECT ?id ?pname ?vtext WHERE {
          ?p a rdf:Property ; rdfs:label ?pname . ?i ?p ?v ; k3m:itemId ?id . ?v rdfs:label ?vtext }""")
    got = Counter((str(i), str(p), str(v)) for i, p, v in rows)
    ids, props, values = build.items["item_id"].tolist(), build.properties, build.values
    assert got == Counter((ids[i], props[p], values[v]) for i, p, v in np.asarray(build.triples).tolist())


def test_hostile_strings_round_trip_exactly(hostile_build, hostile, tmp_path):
    build = CatalogBuild.open(hostile_build)
    report = load_rdf(build, tmp_path / "store")
    graph = open_rdf(report.path)
    ns = Namespaces()
    for item_id, title in zip(build.items["item_id"], build.items["title"]):
        labels = sparql(graph, "SELECT ?i ?t WHERE { ?i rdfs:label ?t }", {"i": rdflib.URIRef(ns.item(item_id))})
        assert [str(r[1]) for r in labels] == [title]
    for text in (hostile.rdf_value, hostile.value):
        found = sparql(graph, "SELECT ?t ?v WHERE { ?v rdfs:label ?t }", {"t": rdflib.Literal(text)})
        assert [str(r[1]) for r in found] == [ns.value(text)]
    assert _count(graph, PKG_COUNT) == len(build.triples)


def test_item_without_triples_is_typed_but_has_no_pkg_triples(hostile_build, tmp_path):
    build = CatalogBuild.open(hostile_build)
    graph = open_rdf(load_rdf(build, tmp_path / "store").path)
    empty = int(np.flatnonzero(np.diff(build.item_triple_offsets) == 0)[0])
    item = rdflib.URIRef(Namespaces().item(build.items["item_id"].iloc[empty]))
    assert (item, rdflib.RDF.type, rdflib.URIRef(Namespaces().term("Item"))) in graph
    pkg = sparql(graph, "SELECT ?i ?p WHERE { ?p a rdf:Property . ?i ?p ?v }", {"i": item})
    assert len(list(pkg)) == 0
    assert len(list(sparql(graph, "SELECT ?i ?p WHERE { ?i ?p ?v }", {"i": item}))) >= 4  # type, id, split, image


def test_literals_escape_control_characters():
    text = 'line1\nline2\r\n"quoted" \\ back\tslash'
    line = f"<https://k3m.example/a> <https://k3m.example/b> {_literal(text)} .\n"
    (quad,) = list(ox.parse(line.encode(), ox.RdfFormat.N_TRIPLES))
    assert quad.object.value == text


@pytest.mark.parametrize("fmt, rdflib_format", [("turtle", "turtle"), ("ntriples", "nt")])
def test_exports_parse_back_to_the_same_triples(slice_store, tmp_path, fmt, rdflib_format):
    build, report = slice_store
    out = tmp_path / f"pkg.{fmt}"
    export_rdf(report.path, out, fmt)
    parsed = rdflib.Graph().parse(out, format=rdflib_format)
    assert len(parsed) == report.triples
    if fmt == "turtle":
        assert out.read_text().startswith("@prefix")


def test_reload_replaces_the_store_with_the_same_content(hostile_build, tmp_path):
    build = CatalogBuild.open(hostile_build)
    first = load_rdf(build, tmp_path / "store")
    second = load_rdf(build, tmp_path / "store")
    assert first.triples == second.triples
    assert _count(open_rdf(second.path), "SELECT (COUNT(*) AS ?n) WHERE { ?s ?p ?o }") == first.triples
    assert read_meta(second.path)["pkg_triples"] == len(build.triples)
    assert [p.name for p in tmp_path.iterdir()] == ["store"]  # no partial or old directories left


def test_missing_store_is_a_clear_error(tmp_path):
    with pytest.raises(RdfStoreError, match="k3m kg load"):
        open_rdf(tmp_path / "nothing")
