"""Item embeddings: a trained model's c* for every item of a build (``embed_build``), the
store beside the build (``EmbeddingStore``), the write-back onto the graph's Item nodes and
a 2-D projection for a look. ``ItemEncoder`` (k3m.embedding.encoder) is the one path from
build rows to c*, shared with the evaluation."""
from k3m.embedding.embed import EmbedReport, EmbedSettings, embed_build
from k3m.embedding.encoder import ItemEncoder
from k3m.embedding.store import EmbeddingStore, EmbeddingStoreError

__all__ = ["EmbedReport", "EmbedSettings", "EmbeddingStore", "EmbeddingStoreError", "ItemEncoder", "embed_build"]
