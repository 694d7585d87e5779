"""The interface of an input adapter: one encoder mode's part of the collation.

An adapter turns :class:`~k3m.data.dataset.ItemRecord`s into its mode's typed input
sub-batch and targets (:mod:`k3m.model.inputs`), the items' presence, and the pairs each item
keeps in its knowledge stream (with their token spans there) and, in pretraining, the pairs
it masks out of it. The shared collator (:class:`k3m.data.collate.K3MCollator`) makes the star
graph, the LPM targets and the labels from that, and asks the adapter for the vectors the
LPM needs (``add_vocabulary``). Every random draw is keyed by (seed, epoch, build row,
stream) (k3m.data.masking), never by batch, worker or call order.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from k3m.data.dataset import ItemRecord
from k3m.model.batch import LPMTargets
from k3m.model.inputs import ModeInputs, ModeTargets


@dataclass
class PairArrays:
    """Pairs of a batch as int64 arrays: batch position, property and value ids [P], and
    (for pairs in the knowledge stream) the property's and value's tokens there [P, 2]."""

    item: np.ndarray
    property: np.ndarray
    value: np.ndarray
    property_span: Optional[np.ndarray] = None
    value_span: Optional[np.ndarray] = None

    @classmethod
    def empty(cls) -> "PairArrays":
        none = np.zeros(0, np.int64)
        return cls(none, none, none)


@dataclass
class Collated:
    """One mode's part of a batch."""

    inputs: ModeInputs
    targets: Optional[ModeTargets]  # None when the collator makes no targets
    title_present: np.ndarray  # bool [B]
    image_present: np.ndarray  # bool [B]
    knowledge_present: np.ndarray  # bool [B]
    pairs: PairArrays  # in the knowledge stream and the graph, with spans
    masked: PairArrays  # taken out of the stream (LPM positives after the graph's); empty if none


class InputAdapter:
    """Subclasses: ``__init__(dataset, tokenizer, config, targets, fixed_length)``."""

    def collate(self, records: Sequence[ItemRecord]) -> Collated:
        raise NotImplementedError

    def add_vocabulary(self, inputs: ModeInputs, lpm: LPMTargets) -> None:
        """Put what the LPM's property and value vectors are made from into ``inputs``
        (rows of ``lpm.property_ids`` / ``lpm.value_ids``)."""
        raise NotImplementedError
