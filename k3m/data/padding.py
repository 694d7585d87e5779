"""Rows of different lengths as one padded array and its mask (token ids, labels, features)."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np


def pad(rows: Sequence[np.ndarray], width: Optional[int] = None, fill=0, dtype=np.int64, tail: tuple = ()) -> tuple[np.ndarray, np.ndarray]:
    """``rows`` [n_b, *tail] -> (array [B, W, *tail] filled with ``fill`` past each row, bool
    mask [B, W], True = a row's own entry). ``W`` = ``width`` or the longest row (at least 1,
    so that a batch without any entry still has a shape)."""
    if width is None:
        width = max([1] + [len(r) for r in rows])
    out = np.full((len(rows), width, *tail), fill, dtype=dtype)
    mask = np.zeros((len(rows), width), dtype=bool)
    for b, row in enumerate(rows):
        out[b, : len(row)] = row
        mask[b, : len(row)] = True
    return out, mask
