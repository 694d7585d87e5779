"""Shared fixtures. Data comes from ../shared/datasets (real catalogs, never copied in)."""
from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest

from kg import embedded_server
from kg.embedded_server import ServerSettings
from kg.graph_db import connect

REPO = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("K3M_DATASETS", REPO.parent / "shared" / "datasets"))
FASHION = DATASETS / "fashion44k"
K3M_SAMPLE = DATASETS / "k3m-sample"
HOMEGOODS = DATASETS / "homegoods3k"


@pytest.fixture(scope="session", autouse=True)
def feature_cache_dir(tmp_path_factory) -> Path:
    """The session's feature cache (frozen encoders' outputs), never the project's data/features."""
    from k3m.data.index import FEATURES_DIR_ENV

    path = tmp_path_factory.mktemp("features")
    before = os.environ.get(FEATURES_DIR_ENV)
    os.environ[FEATURES_DIR_ENV] = str(path)
    yield path
    if before is None:
        os.environ.pop(FEATURES_DIR_ENV, None)
    else:
        os.environ[FEATURES_DIR_ENV] = before


@pytest.fixture(scope="session")
def fashion_dir() -> Path:
    if not (FASHION / "styles.jsonl.gz").is_file():
        pytest.fail(f"fashion44k not found at {FASHION}; set K3M_DATASETS")
    return FASHION


@pytest.fixture(scope="session")
def homegoods_dir() -> Path:
    if not (HOMEGOODS / "products.jsonl").is_file():
        pytest.fail(f"homegoods3k not found at {HOMEGOODS}; set K3M_DATASETS")
    return HOMEGOODS


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
def update_catalogs(fashion_dir, tmp_path_factory):
    """A catalog and its next version, from real fashion44k rows: ``old.jsonl`` = rows 0-599,
    ``new.jsonl`` = rows 40-639 with 20 titles, 10 colours and 12 images (another product's
    photo under the same id) changed; ``old.zip`` / ``new.zip`` their images.
    Returns (directory, edited ids per field, old ids, new ids)."""
    import gzip
    import json
    import zipfile

    OLD, NEW = (0, 600), (40, 640)
    root = tmp_path_factory.mktemp("sync-catalogs")
    with gzip.open(fashion_dir / "styles.jsonl.gz", "rt", encoding="utf-8") as stream:
        rows = [json.loads(line) for line in itertools.islice(stream, NEW[1])]
    old, new = rows[OLD[0]:OLD[1]], [json.loads(json.dumps(r)) for r in rows[NEW[0]:NEW[1]]]
    titled, coloured, pictured = new[:20], new[20:30], new[30:42]
    for r in titled:
        r["productDisplayName"] = f"{r.get('productDisplayName') or ''} (new season)"
    for r in coloured:
        r["baseColour"] = "Teal" if r.get("baseColour") != "Teal" else "Olive"
    (root / "old.jsonl").write_text("".join(json.dumps(r) + "\n" for r in old), encoding="utf-8")
    (root / "new.jsonl").write_text("".join(json.dumps(r) + "\n" for r in new), encoding="utf-8")
    swap = {str(r["id"]) for r in pictured}
    ids = [str(r["id"]) for r in rows]
    with zipfile.ZipFile(fashion_dir / "images.zip") as source, \
            zipfile.ZipFile(root / "old.zip", "w") as old_zip, zipfile.ZipFile(root / "new.zip", "w") as new_zip:
        present = set(source.namelist())
        for k, item_id in enumerate(ids):
            name = f"images/{item_id}.jpg"
            if name not in present:
                continue
            data = source.read(name)
            old_zip.writestr(name, data)
            if item_id in swap:  # the photo of a product far away in the catalog
                other = next(f"images/{ids[j % len(ids)]}.jpg" for j in range(k + 300, k + 400)
                             if f"images/{ids[j % len(ids)]}.jpg" in present)
                data = source.read(other)
            new_zip.writestr(name, data)
    edited = {"title": {str(r["id"]) for r in titled}, "triples": {str(r["id"]) for r in coloured}, "image": swap}
    return root, edited, {str(r["id"]) for r in old}, {str(r["id"]) for r in new}


@pytest.fixture(scope="session")
def k3m_sample_build(k3m_sample_dir, tmp_path_factory) -> Path:
    """Catalog build of k3m-sample train + valid (500 items, all image-missing)."""
    from etl.build import import_catalog

    out = tmp_path_factory.mktemp("builds") / "k3m-sample"
    import_catalog([k3m_sample_dir / "small_train.tsv", k3m_sample_dir / "small_valid.tsv"], "k3m-tsv", out)
    return out


# the tiny preset made narrow: a pretraining of a few steps takes seconds on 2 CPU cores
MICRO_PRETRAINING = [
    "model.text.hidden_size=32", "model.text.intermediate_size=64", "model.text.num_layers=1",
    "model.image.hidden_size=32", "model.image.intermediate_size=64",
    "model.co_attention.hidden_size=32", "model.co_attention.intermediate_size=64", "model.structure.heads=2",
    "vocab_size=2000", "batch_size=16", "train_items=256", "valid_items=16", "threads=1", "progress=false",
    "max_steps=6", "eval_every=0", "checkpoint_every=6", "num_workers=0", "lr=2e-3",
]


@pytest.fixture(scope="session")
def micro_checkpoint(fashion_slice_build, tmp_path_factory) -> Path:
    """A micro K3M pretrained 6 steps on the fashion600 slice (run dir; read-only for tests)."""
    from k3m.training import train
    from k3m.training.config import TrainConfig

    run_dir = tmp_path_factory.mktemp("micro-runs") / "micro"
    train(TrainConfig.load(REPO / "configs" / "pretrain_tiny.yaml", [f"build={fashion_slice_build}", f"run_dir={run_dir}", *MICRO_PRETRAINING]))
    return run_dir


@pytest.fixture(scope="session")
def slice_view(fashion_slice_build, tmp_path_factory):
    """slice_view(name) -> the fashion600 build seen through symlinks in a fresh directory,
    so what a test writes into it (embeddings) stays private to that test."""

    def make(name: str) -> Path:
        view = tmp_path_factory.mktemp(name) / "fashion600"
        view.mkdir()
        for f in Path(fashion_slice_build).iterdir():
            (view / f.name).symlink_to(f)
        return view

    return make


@pytest.fixture(scope="session")
def slice_build(fashion_slice_build):
    """The 600-item fashion44k slice, opened."""
    from etl.catalog_build import CatalogBuild

    return CatalogBuild.open(fashion_slice_build)


@pytest.fixture(scope="session")
def slice_index(slice_build):
    from k3m.data import CatalogIndex

    return CatalogIndex.from_build(slice_build)


@pytest.fixture(scope="session")
def slice_tokenizer(slice_build, slice_index, tmp_path_factory):
    """A WordPiece tokenizer trained on the slice's train split, as `k3m pretrain` does."""
    from encoders.text import train_wordpiece_tokenizer
    from k3m.data import tokenizer_corpus

    texts = tokenizer_corpus(slice_index, slice_build.item_indices("train"))
    return train_wordpiece_tokenizer(texts, 2000, tmp_path_factory.mktemp("slice_tokenizer"))


# the cpu preset (frozen encoders) made narrow: a few steps take seconds on 2 CPU cores
MICRO_FROZEN = {"text": {"hidden_size": 32, "num_heads": 2}, "image": {"hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "image_size": 96},
                "co_attention": {"hidden_size": 32, "intermediate_size": 64, "num_heads": 2}, "structure": {"heads": 2}}


@pytest.fixture(scope="session")
def frozen_config():
    """K3MConfig of the cpu preset (frozen MiniLM + EfficientNet features), micro-sized."""
    from k3m.model import K3MConfig
    from k3m.training.prepare import resolve_text_dir

    return resolve_text_dir(K3MConfig.from_preset("cpu", **MICRO_FROZEN))


@pytest.fixture(scope="session")
def frozen_slice_index(slice_build, frozen_config):
    """The fashion600 slice's index with its frozen features (computed once per session)."""
    from k3m.data import index_for

    return index_for(slice_build, frozen_config, progress=False)


@pytest.fixture()
def single_thread():
    """One intra-op thread for the test: on a CPU shared with other test runs, two OpenMP
    threads spin-waiting on each other make small models 5-20x slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# -- the graph database: one real embedded ArcadeDB server (Bolt, loopback) per session ------
@pytest.fixture(scope="session")
def kg_data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("kg-data")


@pytest.fixture(scope="session")
def kg_server(kg_data_dir):
    """The real embedded ArcadeDB server with Bolt, on a free loopback port, for the session."""
    server = embedded_server.start(data_dir=kg_data_dir)
    yield server
    server.stop()


_database_names = itertools.count()


@pytest.fixture
def graph_db(kg_server, kg_data_dir):
    """A GraphDB on a fresh, empty database of the session server (tests never share data)."""
    with connect(database=f"t{next(_database_names)}", server_settings=ServerSettings(data_dir=kg_data_dir)) as db:
        yield db
