"""Fixtures of the model tests (tests/k3m/test_model*.py): the real 600-item fashion44k
slice, a WordPiece tokenizer trained on its train split, and real K3MBatches made by the
data pipeline's collator, with modalities removed through its corruption hooks."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from etl.catalog_build import CatalogBuild


@pytest.fixture(scope="session")
def model_build(fashion_slice_build) -> CatalogBuild:
    return CatalogBuild.open(fashion_slice_build)


@pytest.fixture(scope="session")
def model_index(model_build):
    from k3m.data import CatalogIndex

    return CatalogIndex.from_build(model_build)


@pytest.fixture(scope="session")
def model_tokenizer(model_build, model_index, tmp_path_factory):
    from encoders.text import train_wordpiece_tokenizer
    from k3m.pretrain import training_texts

    texts = training_texts(model_index, model_build.item_indices("train"))
    return train_wordpiece_tokenizer(texts, 2000, tmp_path_factory.mktemp("model_tokenizer"))


@pytest.fixture(scope="session")
def make_batch(model_build, model_index):
    """make_batch(config, tokenizer, rows=None, n=8, presence=None, targets=True) -> K3MBatch.

    ``presence``: one (title, image, knowledge) triple of bools per item; a False removes
    that modality of the item the way the evaluation's missing setting does.
    """
    from k3m.data import Corruption, K3MCollator, K3MDataset

    train = model_build.item_indices("train")

    def make(config, tokenizer, rows=None, n=8, presence=None, targets=True):
        rows = np.asarray(train[:n] if rows is None else rows, dtype=np.int64)
        corruption = None
        if presence is not None:
            t, i, k = (np.array(col, dtype=bool) for col in zip(*presence))
            corruption = Corruption.for_items(
                model_index.num_items, rows, title_source=np.where(t, rows, -1), image_source=np.where(i, rows, -1), knowledge_present=k
            )
        dataset = K3MDataset(
            model_index,
            rows,
            max_pairs=config.text.max_pairs,
            use_title=config.use_title,
            use_image=config.use_image,
            use_knowledge=config.use_knowledge,
            corruption=corruption,
        )
        collator = K3MCollator(dataset, tokenizer, config, targets=targets)
        return collator([dataset[int(r)] for r in rows])

    return make


@pytest.fixture()
def tiny_model_config(model_tokenizer):
    from k3m.config import K3MConfig

    torch.manual_seed(0)
    return K3MConfig.preset("tiny").with_tokenizer(model_tokenizer)


@pytest.fixture()
def single_thread():
    """One intra-op thread for the test: on a CPU shared with other test runs, two OpenMP
    threads spin-waiting on each other make small models 5-20x slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
