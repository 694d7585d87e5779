"""CatalogIndex: what every batch needs from a catalog build, computed once.

Per-item pairs (CSR over the train triples unless asked for all), each property's values,
the sorted codes of the triples (LPM filtering), titles, categories and image presence.
Within an item, pairs follow one property order (a checkpoint's, or the build's own: most
frequent properties first), so the knowledge caps drop the rarest properties.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np
import torch

from encoders.cache import BuildFeatures, FeatureCache, FeatureSpec, distinct_pairs
from encoders.image.region_file import RegionFeatureFile
from etl.catalog_build import CatalogBuild
from etl.errors import InvalidValue
from etl.string_arrays import strings
from k3m.data.knowledge import knowledge_text
from k3m.data.negatives import triple_codes

FACTS = ("train", "all")
FEATURES_DIR_ENV = "K3M_FEATURES_DIR"  # the feature cache root (default: $K3M_DATA_DIR/features)


@dataclass
class CatalogIndex:
    path: Path
    properties: list[str]
    values: list[str]
    titles: np.ndarray  # StringDType [N] (numpy strings, not Python objects); None = missing (null or blank)
    category: np.ndarray  # int64 [N], -1 = none
    has_image: np.ndarray  # bool [N]
    pair_offsets: np.ndarray  # int64 [N+1]: train pairs of row i are pair_table[off[i]:off[i+1]]
    pair_table: np.ndarray  # int64 [T, 2] (property, value); within an item, frequent properties first
    prop_offsets: np.ndarray  # int64 [num_props+1]: CSR over prop_values
    prop_values: np.ndarray  # int64, the distinct values of each property
    true_codes: np.ndarray  # int64, sorted codes of the triples (negatives.triple_codes)

    property_order: list[str]  # property names, the order an item's pairs follow
    item_ids: Optional[np.ndarray] = None  # StringDType [N], the build's item ids
    # rows of a precomputed image-feature file per build row (-1: none); set by index_for for
    # models that read image features instead of pixels (image.kind "region")
    image_feature_rows: Optional[np.ndarray] = None
    # frozen encoders: the build's rows in the feature cache (set by index_for)
    features: Optional[BuildFeatures] = None

    @classmethod
    def from_build(
        cls, build: CatalogBuild | str | Path, facts: str = "train", property_order: Optional[Sequence[str]] = None
    ) -> "CatalogIndex":
        """``facts="train"``: the train triples only (pretraining, evaluation: held-out facts
        never reach a model); ``"all"``: every triple of the build (embedding a catalog whose
        held-out facts are known, e.g. in production).

        ``property_order``: the order a checkpoint was trained with (``property_order.json``
        in every checkpoint), so that an item keeps its pair order, and so its embedding,
        in a grown or changed catalog; properties it does not name follow, most frequent
        first. Default: this build's own order, most frequent properties first."""
        if facts not in FACTS:
            raise ValueError(f"facts must be one of {FACTS}, got {facts!r}")
        if not isinstance(build, CatalogBuild):
            build = CatalogBuild.open(build)
        n, num_props, num_values = build.num_items, len(build.properties), len(build.values)
        train = build.train_triples() if facts == "train" else np.asarray(build.triples)
        train = train.astype(np.int64)
        # within an item, the most frequent properties first: the caps then drop rare ones
        freq = np.bincount(train[:, 1], minlength=num_props)
        given = {name: i for i, name in enumerate(dict.fromkeys(property_order or ()))}
        first = np.array([given.get(name, len(given)) for name in build.properties], dtype=np.int64)
        ordered = np.lexsort((np.arange(num_props), -freq, first))
        rank = np.empty(num_props, dtype=np.int64)
        rank[ordered] = np.arange(num_props)
        train = train[np.lexsort((train[:, 2], rank[train[:, 1]], train[:, 0]))]
        pv = distinct_pairs(train[:, 1:], num_values)
        items = _item_columns(build)
        return cls(
            path=build.path,
            properties=build.properties,
            values=build.values,
            titles=items["title"],
            category=items["category_index"],
            has_image=items["has_image"],
            pair_offsets=np.concatenate([[0], np.cumsum(np.bincount(train[:, 0], minlength=n))]).astype(np.int64),
            pair_table=np.ascontiguousarray(train[:, 1:]),
            prop_offsets=np.concatenate([[0], np.cumsum(np.bincount(pv[:, 0], minlength=num_props))]).astype(np.int64),
            prop_values=pv[:, 1].copy(),
            true_codes=np.sort(triple_codes(train[:, 0], train[:, 1], train[:, 2], num_props, num_values)),
            property_order=[build.properties[i] for i in ordered.tolist()],
            item_ids=items["item_id"],
        )

    def with_image_feature_rows(self, rows: np.ndarray) -> "CatalogIndex":
        """A copy whose images are the rows of a feature file: an item has an image exactly
        when the file has a row for it."""
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) != self.num_items:
            raise ValueError(f"{len(rows)} image feature rows for {self.num_items} items")
        return replace(self, has_image=rows >= 0, image_feature_rows=rows)

    @property
    def num_items(self) -> int:
        return len(self.titles)

    def pairs(self, row: int) -> np.ndarray:
        """int64 [n, 2] (property, value) train pairs of a build row, in ``property_order``."""
        return self.pair_table[self.pair_offsets[row] : self.pair_offsets[row + 1]]

    def pair_strings(self, pairs: np.ndarray) -> list[tuple[str, str]]:
        return [(self.properties[p], self.values[v]) for p, v in pairs.tolist()]


def _item_columns(build: CatalogBuild) -> dict[str, np.ndarray]:
    """The columns of items.parquet the index keeps, read with pyarrow (not the build's pandas
    frame of every column): titles and ids as numpy strings, a blank title as missing."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.ParquetFile(build.path / "items.parquet").read(columns=["item_id", "title", "category_index", "has_image"])
    title = table.column("title").combine_chunks()
    blank = pc.fill_null(pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(title)), 0), True)
    return {
        "title": strings(pc.if_else(blank, None, title), optional=True),
        "item_id": strings(table.column("item_id")),
        "category_index": table.column("category_index").to_numpy().astype(np.int64),
        "has_image": table.column("has_image").to_numpy().astype(bool),
    }


def feature_spec(model_config) -> FeatureSpec:
    """The feature cache's spec of a model with frozen encoders."""
    text, image = model_config.text, model_config.image
    if image.image_size == 0:
        raise InvalidValue("image.image_size 0 (chosen for the catalog) is resolved when pretraining starts "
                           "(encoders.resolution.resolve_feature_resolution); this model config was never resolved")
    return FeatureSpec(text=text.pretrained_text_dir, image=f"efficientnet-{image.efficientnet}",
                       image_size=image.image_size, grid_cells=image.feature_grid, max_title_tokens=text.max_title_tokens)


def index_for(build: CatalogBuild | str | Path, model_config, facts: str = "train",
              property_order: Optional[Sequence[str]] = None, progress: bool = True) -> CatalogIndex:
    """The build's index as ``model_config``'s model reads it: with frozen encoders, the
    build's features from the feature cache (computed first where missing); for
    ``image.kind: region``, the images are the rows of its region feature file."""
    if not isinstance(build, CatalogBuild):
        build = CatalogBuild.open(build)
    index = CatalogIndex.from_build(build, facts=facts, property_order=property_order)
    if model_config.frozen:
        # computing missing features builds the encoders, whose initialisation draws from
        # torch's RNG: forked, so a run's seed gives the same model whether the cache was warm
        with torch.random.fork_rng():
            features = FeatureCache(feature_spec(model_config), os.environ.get(FEATURES_DIR_ENV)).for_build(build, progress=progress)
        if features.text_dim != model_config.text.feature_size:
            raise InvalidValue(f"cached text features are {features.text_dim}-d, the model reads text.feature_size="
                             f"{model_config.text.feature_size}")
        index = replace(index, features=features)
    image = model_config.image
    if model_config.use_image and image.kind == "region":
        if not image.region_feature_file:
            raise InvalidValue("image.kind 'region' reads image.region_feature_file (a region feature directory), which is not set")
        regions = RegionFeatureFile.open(image.region_feature_file)
        if regions.num_regions != image.num_regions:
            raise InvalidValue(f"{image.region_feature_file} holds {regions.num_regions} regions per image, "
                             f"the model reads image.num_regions={image.num_regions}")
        index = index.with_image_feature_rows(regions.rows_of(index.item_ids))
    return index


def tokenizer_corpus(index: CatalogIndex, rows) -> Iterator[str]:
    """Titles and knowledge texts of ``rows``: what a WordPiece tokenizer is trained on."""
    for row in rows:
        title = index.titles[row]
        if title:
            yield title
        pairs = index.pairs(int(row))
        if len(pairs):
            yield knowledge_text(index.pair_strings(pairs))[0]
