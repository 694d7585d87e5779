"""Fixtures of the data-pipeline tests: the real 600-item fashion slice, its index and a
WordPiece tokenizer trained on its train split (as `k3m pretrain` does)."""
from __future__ import annotations

import pytest

from etl.catalog_build import CatalogBuild


@pytest.fixture(scope="session")
def slice_build(fashion_slice_build) -> CatalogBuild:
    return CatalogBuild.open(fashion_slice_build)


@pytest.fixture(scope="session")
def slice_index(slice_build):
    from k3m.data import CatalogIndex

    return CatalogIndex.from_build(slice_build)


@pytest.fixture(scope="session")
def slice_tokenizer(slice_build, slice_index, tmp_path_factory):
    from k3m.data.wordpiece import train_wordpiece
    from k3m.pretrain import training_texts

    texts = list(training_texts(slice_index, slice_build.item_indices("train")))
    return train_wordpiece(texts, 2000, tmp_path_factory.mktemp("tokenizer"))


@pytest.fixture(scope="session")
def minilm_tokenizer():
    from encoders.text import load_tokenizer, minilm_dir

    return load_tokenizer(minilm_dir())


@pytest.fixture()
def tiny_config(slice_tokenizer):
    from k3m.config import K3MConfig

    return K3MConfig.preset("tiny").with_tokenizer(slice_tokenizer)
