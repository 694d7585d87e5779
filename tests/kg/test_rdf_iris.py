"""IRI minting: valid IRIs for any catalog string, distinct strings never collide."""
from __future__ import annotations

import pyoxigraph as ox
import pytest

from etl.catalog_build import CatalogBuild
from kg.rdf_iris import Namespaces


def test_every_build_string_gives_a_distinct_valid_iri(hostile_build, k3m_sample_build):
    ns = Namespaces()
    for path in (hostile_build, k3m_sample_build):
        build = CatalogBuild.open(path)
        for mint, names in ((ns.value, build.values), (ns.property, build.properties),
                            (ns.category, build.categories), (ns.item, build.items["item_id"].tolist())):
            iris = [mint(name) for name in names]
            assert len(set(iris)) == len(set(names))
            for iri in iris:
                ox.NamedNode(iri)  # raises on an invalid IRI


def test_percent_encoding_keeps_strings_apart():
    ns = Namespaces("https://shop.example/kg/")
    assert ns.value("Blue Jeans") == "https://shop.example/kg/value/Blue%20Jeans"
    assert ns.value("a/b") != ns.value("a%2Fb") != ns.value("a b")
    assert ns.item("10000' OR 1=1 //") == "https://shop.example/kg/item/10000%27%20OR%201%3D1%20%2F%2F"
    assert ns.term("Item") == "https://shop.example/kg/schema#Item"


@pytest.mark.parametrize("base", ["https://k3m.example", "not an iri/", "https://x.example/<a>/"])
def test_bad_base_iris_are_refused(base):
    with pytest.raises(ValueError):
        Namespaces(base)
