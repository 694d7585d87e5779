"""image.kind 'region' end to end: a region feature file in the original K3M layout feeds
pretraining and embedding through the data pipeline (k3m.data.index_for).

No detector output exists offline for these catalogs, so the file is made from the slice's
real images: each image's four quadrants are its regions (boxes in pixels), a region's
feature is its pooled colours, its class distribution a softmax over them. What is tested
is the path (ids -> file rows -> batch -> model), not the features' quality."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from encoders.image.region_file import RegionFeatureFile
from etl.catalog_build import CatalogBuild
from k3m.embedding.embed import EmbedSettings, embed_build
from k3m.training import TrainConfig, train

REPO = Path(__file__).resolve().parents[3]
REGIONS, DIM, CLASSES = 4, 48, 8


def quadrant_regions(build: CatalogBuild, ids: np.ndarray, rows: np.ndarray, path):
    images = np.asarray(build.images[rows], dtype=np.float32) / 255.0  # [N, S, S, 3]
    n, s = len(rows), images.shape[1]
    h = s // 2
    quads = [images[:, y:y + h, x:x + h] for y in (0, h) for x in (0, h)]  # 4 x [N, h, h, 3]
    features = np.stack([q.reshape(n, 4, h // 4, 4, h // 4, 3).mean((2, 4)).reshape(n, DIM) for q in quads], 1)
    boxes = np.array([[x, y, x + h, y + h] for y in (0, h) for x in (0, h)], dtype=np.float32)[None].repeat(n, 0)
    logits = features[..., :CLASSES] * 10
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    return RegionFeatureFile.write(path, ids, features, boxes, np.full((n, 2), s, np.float32),
                                   np.full(n, REGIONS, np.int32), probs)


def test_region_file_feeds_pretraining_and_embedding(fashion_slice_build, slice_view, tmp_path):
    build = CatalogBuild.open(fashion_slice_build)
    ids = build.items["item_id"].to_numpy(dtype=object)
    covered = np.flatnonzero(np.asarray(build.has_image))[::3][:150]  # a third of the items have regions
    regions = quadrant_regions(build, ids[covered], covered, tmp_path / "regions")
    overrides = [
        f"build={fashion_slice_build}", f"run_dir={tmp_path / 'run'}", "model.image.kind=region",
        f"model.image.region_feature_file={regions.path}", f"model.image.num_regions={REGIONS}",
        f"model.image.region_feature_dim={DIM}", f"model.image.num_region_classes={CLASSES}",
        "model.text.hidden_size=32", "model.text.intermediate_size=64", "model.text.num_layers=1",
        "model.image.hidden_size=32", "model.image.intermediate_size=64", "model.co_attention.hidden_size=32",
        "model.co_attention.intermediate_size=64", "model.structure.heads=2", "vocab_size=2000", "batch_size=16",
        "train_items=128", "valid_items=16", "threads=1", "progress=false", "max_steps=3", "eval_every=0",
        "checkpoint_every=3", "num_workers=0", "log_every=1",
    ]
    summary = train(TrainConfig.load(REPO / "configs" / "pretrain_tiny.yaml", overrides))
    assert summary["steps"] == 3 and summary["train"]["mom"] > 0  # MOM: KL to the class distributions
    lines = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite(l["mom"]) for l in lines if l["split"] == "train")

    # into a private view of the shared slice build: its embeddings/ would show up in other tests' stores
    store, report = embed_build(tmp_path / "run", slice_view("region-builds"), EmbedSettings(model_id="regions"))
    vectors = np.asarray(store.matrix)
    assert vectors.shape == (build.num_items, 32) and np.isfinite(vectors).all()
    # an item's image is its regions: exactly the items in the file have one, at their file rows
    from k3m.data import index_for
    from k3m.model.checkpoint import load_checkpoint

    model = load_checkpoint(tmp_path / "run").model
    index = index_for(fashion_slice_build, model.config)
    assert index.has_image.sum() == len(covered) and set(np.flatnonzero(index.has_image)) == set(covered)
    assert (index.image_feature_rows[covered] == np.arange(len(covered))).all()
