"""DGL export of the item -> value star graphs: an optional target, never a dependency.

The only DGL wheel on PyPI (2.1.0) cannot be imported with torch >= 2.3 (its GraphBolt
library is built per torch version) and upstream stopped releasing, so the import is tried
here and any failure becomes :class:`DGLUnavailable` with the reason and the alternative.
"""
from __future__ import annotations

from pathlib import Path

from etl.errors import UserError
from kg.hetero import HAS, REV_HAS, item_value_graph


class DGLUnavailable(UserError, RuntimeError):
    """DGL is not installed or cannot be loaded next to this torch."""


def load_dgl():
    try:
        import dgl
    except Exception as exc:  # ImportError, or OSError/FileNotFoundError from GraphBolt's native library
        import torch

        raise DGLUnavailable(
            f"DGL cannot be loaded ({type(exc).__name__}: {exc}). DGL's last PyPI wheel (2.1.0) "
            f"does not import with torch >= 2.3 (installed: torch {torch.__version__}); install a DGL "
            "build matching this torch, or use the PyG HeteroData of kg.hetero.item_value_graph "
            "(what K3M trains on) instead."
        ) from exc
    return dgl


def to_dgl(build, item_indices=None, train_only: bool = True):
    """A DGL heterograph with the same nodes, edges and property ids as kg.hetero's."""
    dgl = load_dgl()
    import numpy as np

    if item_indices is None:
        item_indices = np.arange(build.num_items)
    data = item_value_graph(build, item_indices, train_only=train_only)
    has = data[HAS].edge_index
    graph = dgl.heterograph(
        {HAS: (has[0], has[1]), REV_HAS: (has[1], has[0])},
        num_nodes_dict={"item": data["item"].num_nodes, "value": data["value"].num_nodes},
    )
    graph.nodes["item"].data["item_index"] = data["item"].item_index
    graph.nodes["value"].data["value_id"] = data["value"].value_id
    graph.edges[HAS].data["property"] = data[HAS].edge_property
    graph.edges[REV_HAS].data["property"] = data[HAS].edge_property
    return graph


def save_dgl(build, out: Path, train_only: bool = True) -> None:
    dgl = load_dgl()
    dgl.save_graphs(str(out), [to_dgl(build, train_only=train_only)])
