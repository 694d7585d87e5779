"""Items of a catalog build as pretraining / embedding samples.

:class:`K3MDataset` turns a key ``(epoch, build row)`` (or a bare build row = epoch 0) into
an :class:`ItemRecord`: which title, which image and which pairs the item shows, after the
corruption hooks (:class:`Corruption`) and the modality switches. What it reads of the
build comes from a :class:`~k3m.data.index.CatalogIndex`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
from torch.utils.data import Dataset

from k3m.data.index import CatalogIndex
from k3m.data.knowledge import knowledge_text
from k3m.data.masking import STREAM_PAIRS, item_rng

PAIR_ORDERS = ("shuffle", "fixed", "build")  # "build": the former name of "fixed"


@dataclass
class Corruption:
    """What each item shows instead of its own data (evaluation's missing/noise settings).
    Arrays are indexed by build row (length = build items); None = no change.

    - ``title_source[i]`` / ``image_source[i]``: build row whose title / image item i shows,
      -1 = removed.
    - ``knowledge_present[i]``: False removes item i's knowledge (no text, no pairs).
    - ``knowledge_as_title_text``: the "+PKG as text" baseline: the knowledge text is
      appended to the title (``title ; p1 : v1 ; ...``) and the knowledge modality is absent.
    """

    title_source: Optional[np.ndarray] = None
    image_source: Optional[np.ndarray] = None
    knowledge_present: Optional[np.ndarray] = None
    knowledge_as_title_text: bool = False

    @classmethod
    def for_items(
        cls,
        num_items: int,
        rows: Sequence[int],
        title_source: Optional[Sequence[int]] = None,
        image_source: Optional[Sequence[int]] = None,
        knowledge_present: Optional[Sequence[bool]] = None,
        knowledge_as_title_text: bool = False,
    ) -> "Corruption":
        """From arrays aligned with ``rows`` (a corruption plan over some items); every
        other build row keeps its own data."""
        rows = np.asarray(rows, dtype=np.int64)

        def scatter(values, identity):
            if values is None:
                return None
            full = identity.copy()
            full[rows] = np.asarray(values, dtype=identity.dtype)
            return full

        ident = np.arange(num_items, dtype=np.int64)
        return cls(
            title_source=scatter(title_source, ident),
            image_source=scatter(image_source, ident),
            knowledge_present=scatter(knowledge_present, np.ones(num_items, dtype=bool)),
            knowledge_as_title_text=knowledge_as_title_text,
        )


@dataclass
class ItemRecord:
    row: int  # build row (the item itself)
    epoch: int
    title: Optional[str]  # the text shown as title; None = no title
    pairs: np.ndarray  # int64 [n, 2] (property, value) for the knowledge text, <= max_pairs
    image_row: int  # build row of the image shown, -1 = no image
    category: int
    title_row: int = -1  # build row whose title is shown (-1: none); frozen features are looked up by it
    title_pairs: Optional[np.ndarray] = None  # "+PKG as text": the pairs appended to the title


class K3MDataset(Dataset):
    """Map-style dataset over ``rows`` of a build. ``self[(epoch, row)]`` → :class:`ItemRecord`
    (``self[row]`` means epoch 0); ``len`` and ``rows`` describe the items a sampler draws.

    ``use_title`` / ``use_image`` / ``use_knowledge`` (the model config's switches) mark a
    modality absent for every item. ``pair_order="shuffle"`` shuffles an item's pairs per
    (seed, epoch, row) before the caps, so over epochs pretraining sees every pair;
    ``"fixed"`` (embedding, evaluation) puts the most frequent properties first, so the
    caps drop the rarest.
    """

    def __init__(
        self,
        index: CatalogIndex,
        rows: Sequence[int],
        max_pairs: int,
        seed: int = 0,
        pair_order: str = "fixed",
        use_title: bool = True,
        use_image: bool = True,
        use_knowledge: bool = True,
        corruption: Optional[Corruption] = None,
    ):
        if pair_order not in PAIR_ORDERS:
            raise ValueError(f"pair_order must be one of {PAIR_ORDERS}, got {pair_order!r}")
        self.index = index
        self.rows = np.asarray(rows, dtype=np.int64)
        self.max_pairs = max_pairs
        self.seed = seed
        self.pair_order = pair_order
        self.use_title, self.use_image, self.use_knowledge = use_title, use_image, use_knowledge
        self.corruption = corruption or Corruption()
        for name in ("title_source", "image_source", "knowledge_present"):
            array = getattr(self.corruption, name)
            if array is not None and len(array) != index.num_items:
                raise ValueError(f"corruption.{name} has {len(array)} entries, the build has {index.num_items} items")

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key) -> ItemRecord:
        epoch, row = key if isinstance(key, tuple) else (0, key)
        epoch, row = int(epoch), int(row)
        c, index = self.corruption, self.index

        pairs = index.pairs(row)
        if not self.use_knowledge and not c.knowledge_as_title_text:
            pairs = pairs[:0]
        if c.knowledge_present is not None and not c.knowledge_present[row]:
            pairs = pairs[:0]
        if self.pair_order == "shuffle" and len(pairs) > 1:
            pairs = pairs[item_rng(self.seed, epoch, row, STREAM_PAIRS).permutation(len(pairs))]
        pairs = pairs[: self.max_pairs]

        title_row = row if c.title_source is None else int(c.title_source[row])
        title = index.titles[title_row] if title_row >= 0 and self.use_title else None
        if title is None:
            title_row = -1
        title_pairs = None
        if c.knowledge_as_title_text:
            text = knowledge_text(index.pair_strings(pairs))[0]
            title = " ; ".join(t for t in (title, text) if t) or None
            title_pairs, pairs = pairs, pairs[:0]

        image_row = row if c.image_source is None else int(c.image_source[row])
        if image_row < 0 or not self.use_image or not index.has_image[image_row]:
            image_row = -1
        return ItemRecord(row, epoch, title, pairs, image_row, int(index.category[row]), title_row, title_pairs)
