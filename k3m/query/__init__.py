"""`k3m query ...`: Cypher-driven scripts over the graph and the build's item embeddings.

    k3m query similar ITEM_ID [--same-brand] [--where P=V] [--category C] [--no-image]
    k3m query complete --property P [--top-k 3] [--dry-run]
    k3m query export "CYPHER RETURNING id" [--param k=v] -o out.parquet|out.npz

Free Cypher is `k3m kg cypher` (kg/cypher.py). Each script is also a Python function (see
docs/query.md); all take an open ``kg.graph_db.GraphDB``.
"""
from __future__ import annotations

from k3m.query.complete import CompletionSettings, complete_attributes
from k3m.query.export import export_items
from k3m.query.patterns import ItemFilter
from k3m.query.similar import similar_items
from k3m.query.vector_search import VectorSearch

__all__ = [
    "CompletionSettings",
    "ItemFilter",
    "VectorSearch",
    "complete_attributes",
    "export_items",
    "similar_items",
]


def add_parser(subparsers) -> None:
    from k3m.query import complete, export, similar

    p = subparsers.add_parser("query", help="similar items, attribute completion, export (free Cypher: k3m kg cypher)",
                              description=__doc__.split("\n\n")[0] + " See docs/query.md.")
    sub = p.add_subparsers(dest="query_command", metavar="QUERY_COMMAND")
    sub.required = True
    for module in (similar, complete, export):
        module.add_parser(sub)
