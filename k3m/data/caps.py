"""How many train pairs the knowledge caps (``max_pairs``, ``max_knowledge_tokens``) drop:
``python -m k3m.pretrain --stats``."""
from __future__ import annotations

from collections import Counter

import numpy as np

from k3m.data.index import CatalogIndex
from k3m.data.knowledge import backend, encode_knowledge


def cap_report(build, tokenizer, max_pairs: int, max_tokens: int, split: str | None = "train", batch_size: int = 1024) -> dict:
    """How many train-split pairs the ``max_pairs`` and ``max_tokens`` caps drop, with pairs
    in the fixed order embedding and evaluation use (most frequent properties first);
    pretraining shuffles the order per epoch, so over epochs every pair gets its turn."""
    index = CatalogIndex.from_build(build)
    tokenizer = backend(tokenizer)
    rows = np.arange(build.num_items) if split is None else build.item_indices(split)
    total = by_pairs = by_tokens = truncated_items = with_pairs = 0
    dropped_props: Counter = Counter()
    kept_pairs = []
    for lo in range(0, len(rows), batch_size):
        chunk = rows[lo : lo + batch_size]
        pairs = [index.pairs(int(r)) for r in chunk]
        capped = [p[:max_pairs] for p in pairs]
        encs = encode_knowledge(tokenizer, [index.pair_strings(p) for p in capped], max_tokens)
        for p, c, e in zip(pairs, capped, encs):
            total += len(p)
            with_pairs += bool(len(p))
            by_pairs += len(p) - len(c)
            by_tokens += len(c) - e.num_pairs
            truncated_items += e.num_pairs < len(p)
            kept_pairs.append(e.num_pairs)
            dropped_props.update(build.properties[int(q)] for q in p[e.num_pairs :, 0])
    return {
        "split": split,
        "items": int(len(rows)),
        "items_with_pairs": with_pairs,
        "pairs": total,
        "dropped_by_max_pairs": by_pairs,
        "dropped_by_max_tokens": by_tokens,
        "kept_fraction": (total - by_pairs - by_tokens) / total if total else 1.0,
        "items_truncated": truncated_items,
        "mean_kept_pairs": float(np.mean(kept_pairs)) if kept_pairs else 0.0,
        "max_pairs": max_pairs,
        "max_tokens": max_tokens,
        "most_dropped_properties": dropped_props.most_common(10),
    }
