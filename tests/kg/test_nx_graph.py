"""The networkx view of the whole PKG and the statistics computed from it."""
from __future__ import annotations

import numpy as np

from etl.catalog_build import CatalogBuild
from kg.nx_graph import distribution, pkg_multidigraph, pkg_stats


def test_graph_holds_every_triple_as_a_keyed_edge(fashion_slice_build):
    build = CatalogBuild.open(fashion_slice_build)
    graph = pkg_multidigraph(build)
    assert graph.number_of_nodes() == build.num_items + len(build.values)
    assert graph.number_of_edges() == len(build.triples)
    i, p, v = np.asarray(build.triples)[0].tolist()
    assert graph.has_edge(("item", i), ("value", v), key=build.properties[p])


def test_stats_agree_with_the_build(k3m_sample_build):
    build = CatalogBuild.open(k3m_sample_build)  # real data where a property repeats within an item
    triples = np.asarray(build.triples)
    stats = pkg_stats(pkg_multidigraph(build))
    per_item = np.bincount(triples[:, 0], minlength=build.num_items)
    distinct_props = [len(set(triples[triples[:, 0] == i, 1].tolist())) for i in range(build.num_items)]
    assert stats["triples"] == len(triples) and stats["items"] == build.num_items
    assert stats["triples_per_item"]["max"] == per_item.max() and stats["triples_per_item"]["mean"] == round(per_item.mean(), 3)
    assert stats["properties_per_item"]["max"] == max(distinct_props)
    assert sum(distinct_props) < len(triples)  # repeats exist, so the two distributions differ
    by_property = stats["values_per_property"]["by_property"]
    for p in range(len(build.properties)):
        assert by_property[build.properties[p]] == len(set(triples[triples[:, 1] == p, 2].tolist()))
    assert stats["items_per_value"]["max"] == np.bincount(triples[:, 2]).max()
    assert sum(stats["triples_per_item"]["histogram"].values()) == build.num_items


def test_distribution_buckets_are_powers_of_two():
    d = distribution([0, 1, 2, 3, 4, 9])
    assert d["histogram"] == {"0": 1, "1": 1, "2-3": 2, "4-7": 1, "8-15": 1}
    assert (d["min"], d["max"], d["median"]) == (0, 9, 2.5)
    assert distribution([])["histogram"] == {}
