"""Fixtures of the model tests: real K3MBatches of the 600-item fashion44k slice made by the
data pipeline's collator, with modalities removed through its corruption hooks."""
from __future__ import annotations

import numpy as np
import pytest
import torch


@pytest.fixture(scope="session")
def make_batch(slice_build, slice_index):
    """make_batch(config, tokenizer, rows=None, n=8, presence=None, targets=True) -> K3MBatch.

    ``presence``: one (title, image, knowledge) triple of bools per item; a False removes
    that modality of the item the way the evaluation's missing setting does.
    """
    from k3m.data import Corruption, K3MDataset, make_collator

    train = slice_build.item_indices("train")

    def make(config, tokenizer, rows=None, n=8, presence=None, targets=True):
        rows = np.asarray(train[:n] if rows is None else rows, dtype=np.int64)
        corruption = None
        if presence is not None:
            t, i, k = (np.array(col, dtype=bool) for col in zip(*presence))
            corruption = Corruption.for_items(
                slice_index.num_items, rows, title_source=np.where(t, rows, -1), image_source=np.where(i, rows, -1), knowledge_present=k
            )
        dataset = K3MDataset(
            slice_index,
            rows,
            max_pairs=config.text.max_pairs,
            use_title=config.use_title,
            use_image=config.use_image,
            use_knowledge=config.use_knowledge,
            corruption=corruption,
        )
        collator = make_collator(dataset, tokenizer, config, targets=targets)
        return collator([dataset[int(r)] for r in rows])

    return make


@pytest.fixture()
def tiny_model_config(slice_tokenizer):
    from k3m.model import K3MConfig

    torch.manual_seed(0)
    return K3MConfig.from_preset("tiny").with_tokenizer(slice_tokenizer)
