"""Shared fixtures. Data comes from ../shared/datasets (real catalogs, never copied in)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("K3M_DATASETS", REPO.parent / "shared" / "datasets"))
FASHION = DATASETS / "fashion44k"
K3M_SAMPLE = DATASETS / "k3m-sample"


@pytest.fixture(scope="session")
def fashion_dir() -> Path:
    if not (FASHION / "styles.jsonl.gz").is_file():
        pytest.fail(f"fashion44k not found at {FASHION}; set K3M_DATASETS")
    return FASHION


@pytest.fixture(scope="session")
def k3m_sample_dir() -> Path:
    if not (K3M_SAMPLE / "small_train.tsv").is_file():
        pytest.fail(f"k3m-sample not found at {K3M_SAMPLE}; set K3M_DATASETS")
    return K3M_SAMPLE
