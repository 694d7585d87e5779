"""The catalog build: the one on-disk artifact every later stage reads.

``k3m import`` writes it (see :mod:`etl.build`); the KG stores, the learning code and the
embedding scripts only ever read it through :class:`CatalogBuild`.

Layout of ``BUILD_DIR`` (format version 1)::

    manifest.json    format version, source files with sha256, image roots, resolved mapping
                     and its mapping_digest (etl/sync.py), counts, image size, seed, limit,
                     split fractions and sizes, package versions
    summary.json     the import report: rows_read, items, rejected_rows, rejected{reason: n},
                     triples, properties, values, pairs (distinct property-value), categories,
                     splits{train, valid, test} (items), triple_splits{...} (triples),
                     images{ok, missing, bad, refused}, image_reasons{"status:reason": n},
                     dropped_values{reason: n}, titles_missing, blank_lines,
                     unsafe_archive_members (zip members never served for their names),
                     empty_sources (sources without a data row), label_leakage (etl/leakage.py),
                     seconds. rows_read == items + rejected_rows; ok+missing+bad+refused == items
    rejects.jsonl    one line per rejected row: source, line, reason, detail, raw
                     (raw_truncated: true when raw was cut at 65,536 characters), id (the
                     row's item id, when it can be read)
    items.parquet    one row per item, row number == item index:
                       item_id (str), title (str, null = missing), category (str, null),
                       category_index (int32, -1 = none), group (str, null),
                       split (str: train | valid | test), has_image (bool),
                       image_status (str: ok | missing | bad | refused),
                       image_digest (str, null = no file read: blake2b-128 of the image
                       file's bytes, what an update compares)
    properties.json  property vocabulary: list of names, position == property index
                     (all vocabularies are sorted by code point; an updated build's
                     are the previous build's, then its new names sorted, and may hold
                     names no item uses any more: ids are never renumbered)
    values.json      value vocabulary: list of value strings, position == value index
                     (values are shared across properties: "Blue" is one node whether it
                     is a baseColour or a colour1; the property lives on the edge)
    categories.json  category vocabulary, position == category_index
    triples.npy      int32 [T, 3] = (item, property, value), sorted, unique
    triple_split.npy int8 [T]: 0 train, 1 valid, 2 test (held-out facts for link
                     prediction; only train triples are model input during pretraining)
    images.npy       uint8 [N, H, W, 3], resized once at import (aspect kept, padded
                     white); rows of items without an image are zero and has_image=False
    sync.json        (updates only: `k3m import --update`) added/changed/removed item ids
                     against the build it replaced; format in etl/sync.py
    graph.json       (not written by the import) the graph database the build was last
                     loaded into, written by `k3m kg load --graph` (kg/loaded_into.py)

Splits: an item's split comes from a seeded hash of its group key (the mapping's ``group``,
e.g. the normalised title, so listings of one product never cross splits) or, without one,
of its id. A triple is held out (valid/test) only where its item keeps a train triple and its
(property, value) still occurs among train triples. Re-running an import gives byte-identical
files except ``summary.json``'s ``seconds``. An update keeps each existing item's split.

Every file is written into a temporary sibling directory which is renamed onto
``BUILD_DIR`` only when complete, so an interrupted import never looks finished.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from etl.errors import UserError

FORMAT_VERSION = 1
SPLITS = ("train", "valid", "test")
TRIPLE_TRAIN, TRIPLE_VALID, TRIPLE_TEST = 0, 1, 2


class BuildError(UserError, RuntimeError):
    """A build directory is missing, incomplete or of another format version."""


@dataclass(frozen=True)
class CatalogBuild:
    """Read-only view of a catalog build. Arrays are memory-mapped and loaded lazily."""

    path: Path

    @classmethod
    def open(cls, path: str | Path) -> "CatalogBuild":
        path = Path(path)
        manifest = path / "manifest.json"
        if not manifest.is_file():
            raise BuildError(f"{path}: not a catalog build (no manifest.json); run `k3m import` first")
        version = json.loads(manifest.read_text())["format_version"]
        if version != FORMAT_VERSION:
            raise BuildError(f"{path}: build format {version}, this code reads {FORMAT_VERSION}")
        return cls(path)

    # -- metadata -------------------------------------------------------------------
    @cached_property
    def manifest(self) -> dict:
        return json.loads((self.path / "manifest.json").read_text())

    @cached_property
    def summary(self) -> dict:
        return json.loads((self.path / "summary.json").read_text())

    @cached_property
    def properties(self) -> list[str]:
        return json.loads((self.path / "properties.json").read_text())

    @cached_property
    def values(self) -> list[str]:
        return json.loads((self.path / "values.json").read_text())

    @cached_property
    def categories(self) -> list[str]:
        return json.loads((self.path / "categories.json").read_text())

    # -- tables ---------------------------------------------------------------------
    @cached_property
    def items(self):
        """pandas DataFrame, one row per item (row number == item index)."""
        import pandas as pd

        return pd.read_parquet(self.path / "items.parquet")

    @property
    def num_items(self) -> int:
        return int(self.manifest["counts"]["items"])

    @cached_property
    def triples(self) -> np.ndarray:
        return np.load(self.path / "triples.npy", mmap_mode="r")

    @cached_property
    def triple_split(self) -> np.ndarray:
        return np.load(self.path / "triple_split.npy", mmap_mode="r")

    @cached_property
    def images(self) -> np.ndarray:
        return np.load(self.path / "images.npy", mmap_mode="r")

    @cached_property
    def has_image(self) -> np.ndarray:
        return self.items["has_image"].to_numpy(dtype=bool)

    def item_indices(self, split: str) -> np.ndarray:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return np.flatnonzero(self.items["split"].to_numpy() == split)

    def train_triples(self) -> np.ndarray:
        """Triples the model may see as input (held-out link-prediction facts removed)."""
        return np.asarray(self.triples[np.asarray(self.triple_split) == TRIPLE_TRAIN])

    def used_vocabulary(self) -> tuple[list[str], list[str], list[str]]:
        """(properties, values, categories) some item uses: an updated build's vocabularies
        are append-only and may hold names no item has any more."""
        triples = np.asarray(self.triples)
        properties = [self.properties[p] for p in np.unique(triples[:, 1]).tolist()]
        values = [self.values[v] for v in np.unique(triples[:, 2]).tolist()]
        categories = set(self.items["category"].dropna().tolist())
        return properties, values, [c for c in self.categories if c in categories]

    @cached_property
    def item_triple_offsets(self) -> np.ndarray:
        """CSR offsets: triples of item i are rows offsets[i]:offsets[i+1] (triples are sorted)."""
        counts = np.bincount(np.asarray(self.triples[:, 0]), minlength=self.num_items)
        return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
