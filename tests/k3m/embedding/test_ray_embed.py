"""`k3m embed --engine ray`: Ray Data map_batches over an actor pool of item encoders writes the
store the single-process path writes. A local Ray of 2 actors, the real fashion600 slice, a
frozen-encoder (CPU default) micro model pretrained a few steps."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from k3m.cli import main
from k3m.embedding.embed import EmbedSettings, embed_build

REPO = Path(__file__).resolve().parents[3]
MICRO = ["model.text.hidden_size=32", "model.text.num_heads=2", "model.image.hidden_size=32", "model.image.num_heads=2",
         "model.image.intermediate_size=64", "model.co_attention.hidden_size=32", "model.co_attention.num_heads=2",
         "model.co_attention.intermediate_size=64", "model.structure.heads=2", "batch_size=32", "valid_items=32",
         "train_items=256", "progress=false", "num_workers=0", "max_steps=4", "checkpoint_every=4", "threads=1"]


@pytest.fixture(scope="module")
def frozen_run(fashion_slice_build, frozen_slice_index, tmp_path_factory) -> Path:
    from k3m.training import TrainConfig, train

    run = tmp_path_factory.mktemp("ray-embed-runs") / "frozen"
    train(TrainConfig.load(REPO / "configs" / "pretrain_cpu.yaml", [f"build={fashion_slice_build}", f"run_dir={run}", *MICRO]))
    return run


@pytest.mark.slow
def test_the_ray_engine_writes_the_store_of_the_local_engine(frozen_run, slice_view, capsys):
    build = slice_view("ray-embed")
    local, local_report = embed_build(frozen_run, build, EmbedSettings(model_id="local"))
    ray, report = embed_build(frozen_run, build, EmbedSettings(model_id="ray", batch_size=48), engine="ray", workers=2)
    said = capsys.readouterr().err
    assert "[k3m embed] 600 items embedded in " in said and "ray: 2 CPU actors)" in said
    assert report.computed == local_report.computed == 600 and report.device == "ray" and ray.meta["device"] == "ray"
    assert ray.matrix.shape == local.matrix.shape and ray.matrix.shape[1] > ray.item_repr.shape[1]  # a kept path
    assert ray.ids.tolist() == local.ids.tolist()
    np.testing.assert_allclose(ray.matrix, local.matrix, atol=1e-5)
    np.testing.assert_allclose(ray.item_repr, local.item_repr, atol=1e-5)
    np.testing.assert_array_equal(ray.property_vectors, local.property_vectors)
    np.testing.assert_array_equal(ray.value_vectors, local.value_vectors)
    assert ray.input_digests.tolist() == local.input_digests.tolist()
    assert set(ray.created.tolist()) == {ray.meta["created"]}


def test_k3m_embed_takes_the_engine_options(frozen_run, slice_view, capsys):
    build = slice_view("embed-engine-options")
    args = ["embed", str(build), "--checkpoint", str(frozen_run), "--no-graph"]
    assert main([*args, "--address", "127.0.0.1:6379"]) == 2
    assert capsys.readouterr().err.strip() == "k3m embed: error: --address and --workers go with --engine ray"
    assert main([*args, "--engine", "ray", "--workers", "0"]) == 2
    assert capsys.readouterr().err.strip() == "k3m embed: error: --workers must be at least 1"
    assert main([*args, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["embed"]["items"] == 600 and doc["embed"]["device"] == "cpu"
