"""Fixtures of the data-pipeline tests (the slice, its index and tokenizer: tests/conftest.py)."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def minilm_tokenizer():
    from encoders.text import load_tokenizer, minilm_dir

    return load_tokenizer(minilm_dir())


@pytest.fixture()
def tiny_config(slice_tokenizer):
    from k3m.model import K3MConfig

    return K3MConfig.from_preset("tiny").with_tokenizer(slice_tokenizer)
