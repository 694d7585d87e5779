"""Fixtures of the encoder tests: the real 600-item fashion44k slice and a WordPiece
tokenizer trained on its train split."""
from __future__ import annotations

import pytest

from etl.catalog_build import CatalogBuild


@pytest.fixture(scope="session")
def encoder_build(fashion_slice_build) -> CatalogBuild:
    return CatalogBuild.open(fashion_slice_build)


@pytest.fixture(scope="session")
def encoder_index(encoder_build):
    from k3m.data import CatalogIndex

    return CatalogIndex.from_build(encoder_build)


@pytest.fixture(scope="session")
def encoder_tokenizer(encoder_build, encoder_index, tmp_path_factory):
    from encoders.text import train_wordpiece_tokenizer
    from k3m.pretrain import training_texts

    texts = training_texts(encoder_index, encoder_build.item_indices("train"))
    return train_wordpiece_tokenizer(texts, 2000, tmp_path_factory.mktemp("encoder_tokenizer"))


@pytest.fixture()
def single_thread():
    """One intra-op thread for the test: on a CPU shared with other test runs, two OpenMP
    threads spin-waiting on each other make small models 5-20x slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
