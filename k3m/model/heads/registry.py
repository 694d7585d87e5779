"""The pretraining heads of each encoder mode, keyed by name, in the order their losses are
computed and summed.

A head serves one or more tasks (the loss names of ``LossConfig``); a task with weight 0, or
whose modality the model does not use, gets no head. Frozen encoders' heads are named by their
task; trainable encoders' MLM head serves ``mlm_title`` and ``mlm_knowledge`` with one decoder
tied to the word embeddings. A new task is a new entry: a factory
``(config, stem) -> TaskHead | None`` (k3m.model.heads.base) and a weight in ``LossConfig``.
"""
from __future__ import annotations

from typing import Callable, Optional

from torch import nn

from encoders.image.cached import GRID_FEATURES
from k3m.model.heads.base import TaskHead
from k3m.model.heads.consistency import ModalityConsistency
from k3m.model.heads.lpm import LinkPrediction
from k3m.model.heads.matching import Matching
from k3m.model.heads.mlm import MaskedTokens
from k3m.model.heads.mom import MaskedVisualTokens
from k3m.model.heads.reconstruction import ModalityReconstruction
from k3m.model.heads.value_prediction import MaskedPairs

HeadFactory = Callable[[object, object], Optional[TaskHead]]


def _masked_tokens(config, stem) -> Optional[TaskHead]:
    w = config.loss
    tasks = tuple(t for t, on in (("mlm_title", config.use_title and w.mlm_title > 0),
                                  ("mlm_knowledge", config.use_knowledge and w.mlm_knowledge > 0)) if on)
    return MaskedTokens(config.hidden_size, config.text.vocab_size, tasks) if tasks else None


def _masked_visual_tokens(config, stem) -> Optional[TaskHead]:
    if not (config.use_image and config.loss.mom > 0):
        return None
    encoder = stem.image_encoder  # regression to its raw features, or KL to the detector's classes
    target_dim = config.image.num_region_classes if config.image.kind == "region" else encoder.feature_dim
    return MaskedVisualTokens(config.image.hidden_size, target_dim, encoder.target_kind)


def _title_reconstruction(config, stem) -> Optional[TaskHead]:
    if not (config.use_title and config.loss.mlm_title > 0):
        return None
    return ModalityReconstruction(config.hidden_size, config.text.feature_size, "mlm_title", "title",
                                  config.keep.reconstruct_in_block)


def _image_reconstruction(config, stem) -> Optional[TaskHead]:
    if not (config.use_image and config.loss.mom > 0):
        return None
    return ModalityReconstruction(config.hidden_size, GRID_FEATURES, "mom", "image", config.keep.reconstruct_in_block)


def _masked_pairs(config, stem) -> Optional[TaskHead]:
    return MaskedPairs(config.hidden_size) if config.use_knowledge and config.loss.mlm_knowledge > 0 else None


def _link_prediction(config, stem) -> Optional[TaskHead]:
    return LinkPrediction(config.lpm) if config.use_knowledge and config.loss.lpm > 0 else None


def _matching(config, stem) -> Optional[TaskHead]:
    if not config.loss.matching > 0:
        return None
    return Matching(config.hidden_size, sum(config.kept_dims.values()), config.matching.dim, config.matching.temperature)


def _consistency(config, stem) -> Optional[TaskHead]:
    if not (config.loss.consistency > 0 and (config.use_title or config.use_image)):
        return None
    widths = {name: width for name, width, used in (
        ("title", config.text.feature_size, config.use_title), ("image", GRID_FEATURES, config.use_image),
        ("knowledge", config.text.feature_size, config.use_knowledge)) if used}
    return ModalityConsistency(widths, config.hidden_size, config.matching.dim)


HEADS: dict[str, dict[str, HeadFactory]] = {
    "trainable": {"mlm": _masked_tokens, "mom": _masked_visual_tokens, "lpm": _link_prediction},
    "frozen": {"mlm_title": _title_reconstruction, "mom": _image_reconstruction, "mlm_knowledge": _masked_pairs,
               "lpm": _link_prediction, "matching": _matching, "consistency": _consistency},
}


def build_heads(config, stem) -> nn.ModuleDict:
    """The heads of ``config.encoders`` that ``config`` trains (``stem``: the model's)."""
    heads = nn.ModuleDict()
    for name, factory in HEADS[config.encoders].items():
        head = factory(config, stem)
        if head is not None:
            heads[name] = head
    return heads
