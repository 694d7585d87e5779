"""The kept path's statistics (k3m.model.nn.kept_features), fitted on the train items before
the first step: per modality, the mean and covariance of the unit-length pooled frozen
features, accumulated in chunks over a seeded sample of at most ``keep.fit_items`` items
(memory bounded by the chunk, not the catalog)."""
from __future__ import annotations

import sys
import zlib

import numpy as np
import torch

CHUNK = 4096


def pooled_frozen_features(index, rows: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(float32 [n, F] pooled frozen features of ``rows``, bool [n] present) for one modality:
    the title's mean token feature, the mean grid cell of the image, the mean
    "property : value" vector of the item's pairs."""
    features = index.features
    if name == "title":
        return features.title_vectors(rows), features.title_rows[rows] >= 0
    if name == "image":
        present = (features.image_rows[rows] >= 0) & index.has_image[rows]
        return features.image_grid(np.where(present, rows, -1)).astype(np.float32).mean(1), present
    counts = index.pair_offsets[rows + 1] - index.pair_offsets[rows]
    out = np.zeros((len(rows), features.text_dim), np.float32)
    have = np.flatnonzero(counts)
    if len(have):
        pairs = np.concatenate([index.pairs(int(r)) for r in rows[have]])
        vectors = np.asarray(features.pair_vectors(pairs[:, 0], pairs[:, 1]), np.float32)
        starts = np.concatenate([[0], np.cumsum(counts[have])[:-1]])
        out[have] = np.add.reduceat(vectors, starts, axis=0) / counts[have, None]
    return out, counts > 0


def fit_kept_features(model, index, rows: np.ndarray, seed: int) -> bool:
    """Fit ``model.kept`` on the train ``rows`` unless it is fitted already (a resumed run);
    True when it fitted."""
    kept = getattr(model, "kept", None)
    if kept is None or bool(kept.fitted):
        return False
    rows = np.asarray(rows, dtype=np.int64)
    limit = model.config.keep.fit_items
    if len(rows) > limit:
        rng = np.random.default_rng([int(seed), zlib.crc32(b"kept-features")])
        rows = np.sort(rng.choice(rows, size=limit, replace=False))
    statistics = {}
    for name in kept.dims:
        total, outer, count = None, None, 0
        for lo in range(0, len(rows), CHUNK):
            x, present = pooled_frozen_features(index, rows[lo:lo + CHUNK], name)
            x = x[present].astype(np.float64)
            x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
            total = x.sum(0) if total is None else total + x.sum(0)
            outer = x.T @ x if outer is None else outer + x.T @ x
            count += len(x)
        if count < 2:  # a catalog without images (K3M's own sample): the block stays empty (zeros)
            print(f"[k3m pretrain] the kept {name} block stays empty: {count} train items have a {name}",
                  file=sys.stderr, flush=True)
            continue
        mean = total / count
        covariance = outer / count - np.outer(mean, mean)
        statistics[name] = (torch.from_numpy(mean).float(), torch.from_numpy(covariance))
    kept.fit(statistics)
    return True
