"""Raw lines of the real datasets, for tests that derive (good or broken) files from them."""
from __future__ import annotations

import gzip
from itertools import islice

import pytest


@pytest.fixture(scope="session")
def fashion_lines(fashion_dir) -> list[bytes]:
    """The first 1,000 lines of styles.jsonl.gz, without newlines."""
    with gzip.open(fashion_dir / "styles.jsonl.gz", "rb") as f:
        return [line.rstrip(b"\n") for line in islice(f, 1000)]


@pytest.fixture(scope="session")
def k3m_lines(k3m_sample_dir) -> list[bytes]:
    """The 400 lines of small_train.tsv, without newlines."""
    return (k3m_sample_dir / "small_train.tsv").read_bytes().rstrip(b"\n").split(b"\n")
