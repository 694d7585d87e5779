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


@pytest.fixture(scope="session")
def fashion_slice_build(fashion_dir, tmp_path_factory) -> Path:
    """Catalog build of the first 600 fashion44k rows (images included)."""
    from etl.build import import_catalog

    out = tmp_path_factory.mktemp("builds") / "fashion600"
    import_catalog([fashion_dir / "styles.jsonl.gz"], "fashion44k", out, limit=600)
    return out


@pytest.fixture(scope="session")
def k3m_sample_build(k3m_sample_dir, tmp_path_factory) -> Path:
    """Catalog build of k3m-sample train + valid (500 items, all image-missing)."""
    from etl.build import import_catalog

    out = tmp_path_factory.mktemp("builds") / "k3m-sample"
    import_catalog([k3m_sample_dir / "small_train.tsv", k3m_sample_dir / "small_valid.tsv"], "k3m-tsv", out)
    return out
