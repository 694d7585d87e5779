"""Item embeddings: a trained model's c* for every item of a build (``embed_build``), the
store beside the build (``EmbeddingStore``), its nearest-neighbour index (``AnnIndex``), the
write-back onto the graph's Item nodes and a 2-D projection for a look. ``ItemEncoder``
(k3m.embedding.encoder) is the one path from build rows to c*, shared with the evaluation.

The names are imported on first use: the query commands and the query service read the
store and the index without paying for torch (``embed_build`` and ``ItemEncoder`` need it).
"""
from __future__ import annotations

import importlib

_WHERE = {
    "EmbedReport": "k3m.embedding.embed",
    "EmbedSettings": "k3m.embedding.embed",
    "embed_build": "k3m.embedding.embed",
    "ItemEncoder": "k3m.embedding.encoder",
    "EmbeddingStore": "k3m.embedding.store",
    "EmbeddingStoreError": "k3m.embedding.store",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)
