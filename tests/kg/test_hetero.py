"""PyG HeteroData batches: edges are exactly each item's own triples, items without triples
are edgeless nodes (never another item's triples), reverse edges mirror forward ones."""
from __future__ import annotations

import numpy as np
import torch

from etl.catalog_build import CatalogBuild
from kg.hetero import HAS, REV_HAS, item_value_graph


def _expected(build, item_indices, train_only):
    """(batch position, property, global value) per triple, straight from the build arrays."""
    triples, split = np.asarray(build.triples), np.asarray(build.triple_split)
    out = []
    for pos, item in enumerate(item_indices):
        rows = np.flatnonzero(triples[:, 0] == item)
        if train_only:
            rows = rows[split[rows] == 0]
        out += [(pos, int(triples[r, 1]), int(triples[r, 2])) for r in rows]
    return out


def _edges(data):
    src, dst = data[HAS].edge_index
    values = data["value"].value_id[dst]
    return list(zip(src.tolist(), data[HAS].edge_property.tolist(), values.tolist()))


def test_batch_edges_are_the_items_own_triples(fashion_slice_build):
    build = CatalogBuild.open(fashion_slice_build)
    batch = [5, 0, 599, 17, 5]  # unordered, with a repeat
    for train_only in (True, False):
        data = item_value_graph(build, batch, train_only=train_only)
        assert _edges(data) == _expected(build, batch, train_only)
        assert data["item"].num_nodes == len(batch) and data["item"].item_index.tolist() == batch
        assert torch.equal(data[REV_HAS].edge_index, data[HAS].edge_index.flip(0))
        assert torch.equal(data[REV_HAS].edge_attr, data[HAS].edge_attr)
        assert data["value"].value_id.unique().numel() == data["value"].num_nodes
    held_out = int((np.asarray(build.triple_split)[np.isin(np.asarray(build.triples)[:, 0], batch)] != 0).sum())
    assert held_out > 0  # the slice really has held-out facts, so train_only was exercised


def test_items_without_triples_are_edgeless_nodes(hostile_build):
    build = CatalogBuild.open(hostile_build)
    counts = np.diff(build.item_triple_offsets)
    empty = int(np.flatnonzero(counts == 0)[0])
    batch = [empty - 1, empty, empty + 1]  # the original code gave `empty` its predecessor's triples
    data = item_value_graph(build, batch, train_only=False)
    assert _edges(data) == _expected(build, batch, train_only=False)
    assert 1 not in data[HAS].edge_index[0].tolist()
    only_empty = item_value_graph(build, [empty])
    assert only_empty["item"].num_nodes == 1 and only_empty["value"].num_nodes == 0
    assert only_empty[HAS].edge_index.shape == (2, 0) and only_empty[REV_HAS].edge_index.shape == (2, 0)


def test_empty_batch(fashion_slice_build):
    data = item_value_graph(CatalogBuild.open(fashion_slice_build), [])
    assert data["item"].num_nodes == 0 and data[HAS].edge_index.shape == (2, 0)
