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


def _shape_mask(stored_shape: tuple) -> np.ndarray:
    """uint8 [16]: what an image file's digest is combined with for the stored shape."""
    text = f"image-file\x00{'x'.join(map(str, stored_shape))}"
    return np.frombuffer(hashlib.blake2b(text.encode(), digest_size=KEY_BYTES).digest(), np.uint8)


def image_file_key(file_digest_hex: str, stored_shape: tuple) -> bytes:
    """Key of an image file's content as stored at ``stored_shape`` ([H, W, 3]): its digest
    (blake2b-128 of the file's bytes) XOR a hash of the shape. A bijection of the digest for
    each shape, so computed for a million items at once in numpy."""
    return (np.frombuffer(bytes.fromhex(file_digest_hex), np.uint8) ^ _shape_mask(stored_shape)).tobytes()


@dataclass
class BuildKeys:
    title: np.ndarray  # uint8 [N, 16]
    has_title: np.ndarray  # bool [N]: a non-blank title to encode
    image: np.ndarray  # uint8 [N, 16]
    has_image: np.ndarray  # bool [N]
    image_keys_from_pixels: int  # items keyed by pixels: the build has no file digest for them


def build_keys(build, wanted: Optional[np.ndarray] = None, batch_rows: int = BATCH_ROWS) -> BuildKeys:
    """Keys of the build's titles and images (``wanted``: bool [N], the rows to key; the
    others read as absent). Each distinct title is hashed once; image keys are numpy over the
    digests; Python strings exist ``batch_rows`` at a time."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    n = build.num_items
    wanted = np.ones(n, bool) if wanted is None else np.asarray(wanted, bool)
    path = build.path / "items.parquet"
    with_digest = "image_digest" in pq.ParquetFile(path).schema_arrow.names
    table = pq.read_table(path, columns=["title", "has_image"] + (["image_digest"] if with_digest else []))
    if table.num_rows != n:
        raise ValueError(f"{path}: {table.num_rows} rows, the build's manifest says {n} items")
    out = BuildKeys(np.zeros((n, KEY_BYTES), np.uint8), np.zeros(n, bool), np.zeros((n, KEY_BYTES), np.uint8),
                    np.zeros(n, bool), 0)

    encoded = pc.dictionary_encode(table.column("title").combine_chunks())
    index = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    index[~wanted] = -1
    have = index >= 0
    needed = np.unique(index[have])
    unique_keys = np.zeros((len(encoded.dictionary), KEY_BYTES), np.uint8)
    unique_ok = np.zeros(len(encoded.dictionary), bool)
    for lo in range(0, len(needed), batch_rows):
        part = needed[lo:lo + batch_rows]
        texts = encoded.dictionary.take(pa.array(part)).to_pylist()
        ok = np.fromiter((bool(t and t.strip()) for t in texts), bool, count=len(texts))
        unique_ok[part] = ok
        if ok.any():
            unique_keys[part[ok]] = text_keys("title", (t for t, k in zip(texts, ok) if k))
    out.has_title[have] = unique_ok[index[have]]
    out.title[have] = unique_keys[index[have]]
    del encoded, index, unique_keys

    has_image = table.column("has_image").to_numpy(zero_copy_only=False).astype(bool) & wanted
    out.has_image[:] = has_image
    if not has_image.any():
        return out
    stored_shape = tuple(build.images.shape[1:])
    by_file = np.zeros(n, bool)
    if with_digest:
        digests = table.column("image_digest").combine_chunks()
        by_file = has_image & pc.equal(pc.utf8_length(digests), 32).fill_null(False).to_numpy(zero_copy_only=False)
        mask = _shape_mask(stored_shape)
        rows = np.flatnonzero(by_file)
        for lo in range(0, len(rows), batch_rows):
            part = rows[lo:lo + batch_rows]
            raw = bytes.fromhex("".join(digests.take(pa.array(part)).to_pylist()))
            out.image[part] = np.frombuffer(raw, np.uint8).reshape(-1, KEY_BYTES) ^ mask
    by_pixels = np.flatnonzero(has_image & ~by_file)
    for row in by_pixels:  # only builds from before file digests were recorded
        out.image[row] = np.frombuffer(image_key(build.images[row]), np.uint8)
    out.image_keys_from_pixels = len(by_pixels)
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
