"""The data pipeline: catalog build → items → K3MBatch.

    index = CatalogIndex.from_build(build_dir)
    dataset = K3MDataset(index, build.item_indices("train"), max_pairs=cfg.text.max_pairs, ...)
    collator = K3MCollator(dataset, tokenizer, cfg, targets=True)   # the adapter of cfg.encoders inside
    batch = collator([dataset[(epoch, row)] for row in rows])   # or make_loader(...)
"""
from k3m.data.caps import cap_report
from k3m.data.adapters import ADAPTERS, FeatureAdapter, TokenAdapter
from k3m.data.collate import K3MCollator, make_collator
from k3m.data.dataset import Corruption, ItemRecord, K3MDataset
from k3m.data.index import FACTS, CatalogIndex, feature_spec, index_for, tokenizer_corpus
from k3m.data.knowledge import encode_knowledge, knowledge_text
from k3m.data.loader import EpochBatchSampler, make_loader

__all__ = [
    "ADAPTERS",
    "FACTS",
    "CatalogIndex",
    "Corruption",
    "EpochBatchSampler",
    "FeatureAdapter",
    "ItemRecord",
    "K3MCollator",
    "K3MDataset",
    "TokenAdapter",
    "cap_report",
    "encode_knowledge",
    "feature_spec",
    "index_for",
    "knowledge_text",
    "make_collator",
    "make_loader",
    "tokenizer_corpus",
]
