"""Content keys of a build's titles and images: what the feature cache's rows are addressed by.

A key is 16 bytes of blake2b over what was encoded, so the same content in another build
(or a grown one) finds its row:

- a title: its text;
- an image: the image file's digest (``image_digest`` of items.parquet: blake2b-128 of the
  file's bytes, recorded at import) with the shape of the stored image, which together fix
  the pixels the encoder sees. A build without digests (made before they were recorded), or
  an item without one, falls back to the stored pixels themselves.

Computed in batches straight from items.parquet into ``uint8 [N, 16]`` arrays: at a million
items the keys take 16 MB, and no per-item Python object outlives its batch.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Optional

import numpy as np

KEY_BYTES = 16
BATCH_ROWS = 65536


def text_key(kind: str, text: str) -> bytes:
    return hashlib.blake2b(f"{kind}\x00{text}".encode(), digest_size=KEY_BYTES).digest()


def text_keys(kind: str, texts) -> np.ndarray:
    """uint8 [n, 16] keys of ``texts``."""
    return np.frombuffer(b"".join(text_key(kind, t) for t in texts), np.uint8).reshape(-1, KEY_BYTES)


def image_key(pixels: np.ndarray) -> bytes:
    """Key of stored pixels (builds without file digests)."""
    array = np.ascontiguousarray(pixels)
    return hashlib.blake2b(repr(array.shape).encode() + array.tobytes(), digest_size=KEY_BYTES).digest()


def image_file_key(file_digest_hex: str, stored_shape: tuple) -> bytes:
    """Key of an image file's content as stored at ``stored_shape`` ([H, W, 3])."""
    prefix = f"image-file\x00{'x'.join(map(str, stored_shape))}\x00".encode()
    return hashlib.blake2b(prefix + bytes.fromhex(file_digest_hex), digest_size=KEY_BYTES).digest()


@dataclass
class BuildKeys:
    title: np.ndarray  # uint8 [N, 16]
    has_title: np.ndarray  # bool [N]: a non-blank title to encode
    image: np.ndarray  # uint8 [N, 16]
    has_image: np.ndarray  # bool [N]
    image_keys_from_pixels: int  # items keyed by pixels: the build has no file digest for them


def build_keys(build, wanted: Optional[np.ndarray] = None, batch_rows: int = BATCH_ROWS) -> BuildKeys:
    """Keys of the build's titles and images (``wanted``: bool [N], the rows to key; the
    others read as absent)."""
    import pyarrow.parquet as pq

    n = build.num_items
    wanted = np.ones(n, bool) if wanted is None else np.asarray(wanted, bool)
    parquet = pq.ParquetFile(build.path / "items.parquet")
    with_digest = "image_digest" in parquet.schema_arrow.names
    columns = ["title", "has_image"] + (["image_digest"] if with_digest else [])
    out = BuildKeys(np.zeros((n, KEY_BYTES), np.uint8), np.zeros(n, bool), np.zeros((n, KEY_BYTES), np.uint8),
                    np.zeros(n, bool), 0)
    stored_shape = None
    lo = 0
    for batch in parquet.iter_batches(batch_size=batch_rows, columns=columns):
        hi = lo + batch.num_rows
        want = wanted[lo:hi]
        titles = batch.column("title").to_pylist()
        keep = np.fromiter((bool(w and t and t.strip()) for t, w in zip(titles, want)), bool, count=len(titles))
        if keep.any():
            out.title[lo:hi][keep] = text_keys("title", (t for t, k in zip(titles, keep) if k))
        out.has_title[lo:hi] = keep
        del titles
        has_image = batch.column("has_image").to_numpy(zero_copy_only=False).astype(bool) & want
        if has_image.any():
            if stored_shape is None:
                stored_shape = tuple(build.images.shape[1:])
            digests = batch.column("image_digest").to_pylist() if with_digest else [None] * batch.num_rows
            by_file = np.fromiter((bool(h and d) for h, d in zip(has_image, digests)), bool, count=len(digests))
            if by_file.any():
                keys = b"".join(image_file_key(d, stored_shape) for d, k in zip(digests, by_file) if k)
                out.image[lo:hi][by_file] = np.frombuffer(keys, np.uint8).reshape(-1, KEY_BYTES)
            by_pixels = np.flatnonzero(has_image & ~by_file)
            for offset in by_pixels:  # only builds from before file digests were recorded
                out.image[lo + offset] = np.frombuffer(image_key(build.images[lo + offset]), np.uint8)
            out.image_keys_from_pixels += len(by_pixels)
            del digests
        out.has_image[lo:hi] = has_image
        lo = hi
    if lo != n:
        raise ValueError(f"{build.path / 'items.parquet'}: {lo} rows, the build's manifest says {n} items")
    return out


def distinct_pairs(pairs: np.ndarray, num_values: int, chunk: int = 1 << 22) -> np.ndarray:
    """int64 [n, 2] distinct (property, value) rows in (property, value) order: ``np.unique(...,
    axis=0)``'s result through 1-D codes, a few million triples at a time (bounded memory)."""
    base = max(num_values, 1)
    codes = np.zeros(0, np.int64)
    for lo in range(0, len(pairs), chunk):
        part = np.asarray(pairs[lo:lo + chunk])
        codes = np.union1d(codes, np.unique(part[:, 0].astype(np.int64) * base + part[:, 1]))
    return np.stack([codes // base, codes % base], axis=1)
