"""Fixtures of the evaluation tests: micro K3M models (random weights: the machinery is under test, not what pretraining
learns) and corruption plans over the slice's items."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from k3m.evaluation.corruption import plan_corruption, product_keys
from k3m.embedding.encoder import ItemEncoder

MICRO = dict(
    text={"hidden_size": 32, "intermediate_size": 64, "num_layers": 1},
    image={"hidden_size": 32, "intermediate_size": 64},
    co_attention={"hidden_size": 32, "intermediate_size": 64},
    structure={"heads": 2},
)


@pytest.fixture()
def make_encoder(slice_tokenizer, slice_index):
    """make_encoder(knowledge_as_title_text=False, **switches) -> ItemEncoder of a micro model."""
    from k3m.model import K3MConfig, K3MModel

    def make(knowledge_as_title_text=False, **switches):
        torch.manual_seed(0)
        config = K3MConfig.from_preset("tiny", **MICRO, **switches).with_tokenizer(slice_tokenizer)
        return ItemEncoder(K3MModel(config).eval(), slice_tokenizer, slice_index, knowledge_as_title_text, batch_size=32)

    return make


@pytest.fixture()
def make_plan(slice_build, slice_index):
    """make_plan(setting, ratio, rows) -> CorruptionPlan over ``rows`` (seed 0)."""

    def make(setting, ratio, rows):
        return plan_corruption(setting, ratio, rows, seed=0, split_tag="test",
                               title_present=np.array([slice_index.titles[r] is not None for r in rows]),
                               image_present=slice_index.has_image[rows], product_key=product_keys(slice_build, rows))

    return make
