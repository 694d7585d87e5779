"""DGL export: a clear error where DGL cannot load, a faithful graph where it can."""
from __future__ import annotations

import importlib.util

import pytest

from etl.catalog_build import CatalogBuild
from kg.dgl_export import DGLUnavailable, load_dgl, to_dgl
from kg.hetero import HAS, item_value_graph


def _dgl_loads() -> bool:
    if importlib.util.find_spec("dgl") is None:
        return False
    try:
        load_dgl()
        return True
    except DGLUnavailable:
        return False


@pytest.mark.skipif(_dgl_loads(), reason="DGL loads here; the conversion test covers it")
def test_unloadable_dgl_raises_a_clear_error(fashion_slice_build):
    with pytest.raises(DGLUnavailable) as info:
        to_dgl(CatalogBuild.open(fashion_slice_build), [0, 1])
    message = str(info.value)
    assert "torch" in message and "kg.hetero" in message and "DGL cannot be loaded" in message


@pytest.mark.skipif(not _dgl_loads(), reason="DGL cannot load with this torch (DESIGN §5)")
def test_dgl_graph_matches_the_pyg_batch(fashion_slice_build):
    build = CatalogBuild.open(fashion_slice_build)
    graph, data = to_dgl(build, [0, 3, 7]), item_value_graph(build, [0, 3, 7])
    src, dst = graph.edges(etype=HAS)
    assert src.tolist() == data[HAS].edge_index[0].tolist() and dst.tolist() == data[HAS].edge_index[1].tolist()
    assert graph.edges[HAS].data["property"].tolist() == data[HAS].edge_property.tolist()
