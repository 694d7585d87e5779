"""The whole PKG as a networkx MultiDiGraph, and the statistics `k3m kg stats` prints.

Nodes are ``("item", index)`` (attributes ``id``, ``title``, ``category``) and
``("value", index)`` (attribute ``text``); each triple is an edge item -> value keyed by
the property name (``property`` attribute too). Multi-edges keep an item that has one
value under two properties (``Blue`` as baseColour and colour1) as two edges.
"""
from __future__ import annotations

from collections import Counter

import networkx as nx
import numpy as np


def pkg_multidigraph(build) -> nx.MultiDiGraph:
    graph = nx.MultiDiGraph()
    items = build.items
    graph.add_nodes_from(
        (("item", i), {"kind": "item", "id": item_id, "title": _text(title), "category": _text(category)})
        for i, (item_id, title, category) in enumerate(zip(items["item_id"].tolist(), items["title"].tolist(), items["category"].tolist()))
    )
    graph.add_nodes_from((("value", v), {"kind": "value", "text": text}) for v, text in enumerate(build.values))
    properties = build.properties
    triples = np.asarray(build.triples).tolist()
    graph.add_edges_from((("item", i), ("value", v), properties[p], {"property": properties[p]}) for i, p, v in triples)
    return graph


def pkg_stats(graph: nx.MultiDiGraph) -> dict:
    """Degree distributions, properties per item and values per property of a PKG graph."""
    items = [n for n, kind in graph.nodes(data="kind") if kind == "item"]
    values = [n for n, kind in graph.nodes(data="kind") if kind == "value"]
    item_degree = [d for _, d in graph.out_degree(items)]
    value_degree = [d for _, d in graph.in_degree(values)]
    properties_per_item = [len({key for _, _, key in graph.out_edges(n, keys=True)}) for n in items]
    values_of: dict[str, set] = {}
    for _, value, key in graph.edges(keys=True):
        values_of.setdefault(key, set()).add(value)
    per_property = {name: len(v) for name, v in sorted(values_of.items(), key=lambda kv: (-len(kv[1]), kv[0]))}
    busiest = sorted(zip(value_degree, values), key=lambda dv: -dv[0])[:10]
    return {
        "items": len(items),
        "values": len(values),
        "properties": len(per_property),
        "triples": graph.number_of_edges(),
        "items_without_triples": sum(1 for d in item_degree if d == 0),
        "values_unused": sum(1 for d in value_degree if d == 0),
        "weakly_connected_components": nx.number_weakly_connected_components(graph) if len(graph) else 0,
        "triples_per_item": distribution(item_degree),
        "items_per_value": distribution(value_degree),
        "properties_per_item": distribution(properties_per_item),
        "values_per_property": {**distribution(list(per_property.values())), "by_property": per_property},
        "top_values": [{"text": graph.nodes[v]["text"], "items": d} for d, v in busiest],
    }


def distribution(counts: list[int]) -> dict:
    """Summary and power-of-two histogram ([lo, hi] inclusive: count) of non-negative counts."""
    if not counts:
        return {"min": 0, "max": 0, "mean": 0.0, "median": 0.0, "histogram": {}}
    array = np.asarray(counts)
    buckets = Counter(0 if c == 0 else int(c).bit_length() for c in counts)
    histogram = {}
    for bucket in sorted(buckets):
        lo, hi = (0, 0) if bucket == 0 else (1 << (bucket - 1), (1 << bucket) - 1)
        histogram[f"{lo}" if lo == hi else f"{lo}-{hi}"] = buckets[bucket]
    return {
        "min": int(array.min()),
        "max": int(array.max()),
        "mean": round(float(array.mean()), 3),
        "median": float(np.median(array)),
        "histogram": histogram,
    }


def _text(value) -> str | None:
    return value if isinstance(value, str) else None
