"""End-to-end pretraining on a real fashion44k slice (512 train items) with a micro model
(the tiny preset made narrower, so that every test here takes seconds on 2 CPU cores).
`python -m k3m.pretrain` with the full tiny preset is benchmarks/bench_pretrain.py's job."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pytest
import torch

from k3m.model.checkpoint import load_checkpoint
from k3m.pretrain import main
from k3m.training import TrainConfig, train, validate
from k3m.training.distributed import setup
from k3m.training.prepare import make_loaders

REPO = Path(__file__).resolve().parents[3]
MICRO = [
    "model.text.hidden_size=32", "model.text.intermediate_size=64", "model.text.num_layers=1",
    "model.image.hidden_size=32", "model.image.intermediate_size=64",
    "model.co_attention.hidden_size=32", "model.co_attention.intermediate_size=64", "model.structure.heads=2",
    "vocab_size=2000", "batch_size=16", "train_items=512", "valid_items=32", "threads=1", "progress=false",
]
NOISY = ("items_per_s", "data_wait_frac")  # wall-clock fields


def config(build, run_dir, *overrides) -> TrainConfig:
    return TrainConfig.load(REPO / "configs" / "pretrain_tiny.yaml", [f"build={build}", f"run_dir={run_dir}", *MICRO, *overrides])


def metrics(run_dir) -> list[dict]:
    lines = [json.loads(l) for l in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in line.items() if k not in NOISY} for line in lines]


@pytest.fixture(scope="module")
def build(fashion_dir, tmp_path_factory) -> Path:
    """The first 720 fashion44k rows: 549 train items, of which the runs use 512."""
    from etl.build import import_catalog

    out = tmp_path_factory.mktemp("builds") / "fashion720"
    import_catalog([fashion_dir / "styles.jsonl.gz"], "fashion44k", out, limit=720)
    return out


SHORT = ["max_steps=8", "log_every=1", "eval_every=4", "checkpoint_every=4", "keep_checkpoints=2"]


@pytest.fixture(scope="module")
def run_a(build, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "a"
    summary = train(config(build, run_dir, *SHORT, "num_workers=2"))
    return run_dir, summary


def test_run_writes_checkpoints_metrics_and_tensorboard(run_a):
    run_dir, summary = run_a
    assert summary["steps"] == 8 and summary["world_size"] == 1
    ckpts = run_dir / "checkpoints"
    assert (ckpts / "latest").read_text().strip() == "step_8"
    assert sorted(p.name for p in ckpts.iterdir()) == ["latest", "step_4", "step_8"]  # no temp dirs left
    lines = metrics(run_dir)
    assert [l["step"] for l in lines if l["split"] == "train"] == list(range(1, 9))
    assert [l["step"] for l in lines if l["split"] == "valid"] == [4, 8]
    assert all(set(l) >= {"loss", "mlm_title", "mlm_knowledge", "mom", "lpm"} for l in lines)
    assert any((run_dir / "tensorboard").glob("events.out.tfevents.*"))


def test_checkpoint_round_trip(run_a, tmp_path):
    from etl.catalog_build import CatalogBuild
    from k3m.data import CatalogIndex
    from k3m.model import K3MModel

    run_dir, summary = run_a
    loaded = load_checkpoint(run_dir)
    model, tokenizer = loaded.model, loaded.tokenizer
    cfg = TrainConfig.load(loaded.path / "train_config.yaml")
    state = torch.load(run_dir / "checkpoints" / "step_8" / "trainer_state.pt", weights_only=False)
    assert state["step"] == 8 and len(state["rng"]) == 1
    assert len(state["optimizer"]["state"]) == sum(1 for p in model.parameters() if p.requires_grad)
    # the reloaded model reproduces the validation losses the run logged at step 8
    build = CatalogBuild.open(cfg.build)
    dist = setup(cfg)
    _, _, valid = make_loaders(cfg, model.config, CatalogIndex.from_build(build), tokenizer,
                               build.item_indices("train")[:512], build.item_indices("valid")[:32], dist)
    assert validate(model, valid, dist, nullcontext()) == pytest.approx(summary["valid"], rel=1e-6)
    # and saves / loads to the same weights and tokenizer
    model.save_pretrained(tmp_path / "again", tokenizer)
    reloaded = K3MModel.from_pretrained(tmp_path / "again")
    assert list(reloaded.state_dict()) == list(model.state_dict())
    for (name, x), y in zip(model.state_dict().items(), reloaded.state_dict().values()):
        assert torch.equal(x, y), name
    from encoders.text import load_tokenizer

    assert load_tokenizer(run_dir / "tokenizer").get_vocab() == tokenizer.get_vocab()  # the run's own
    # the pair order it trained with travels with the checkpoint
    from k3m.model.checkpoint import load_property_order

    assert load_property_order(run_dir) == CatalogIndex.from_build(build).property_order


def test_resume_continues_exactly(build, tmp_path):
    """A run at the default thread count (all cores, no loader workers), resumed from its
    step-4 checkpoint with another worker count: the loss curve of steps 5-8 must be the
    uninterrupted run's, bit for bit (deterministic CPU kernels)."""
    run_dir = tmp_path / "a"
    train(config(build, run_dir, *SHORT, "threads=null", "num_workers=0"))
    resumed = tmp_path / "b"
    shutil.copytree(run_dir, resumed)
    shutil.rmtree(resumed / "checkpoints" / "step_8")
    (resumed / "checkpoints" / "latest").write_text("step_4\n")
    assert main(["--resume", str(resumed), "--set", "num_workers=0"]) == 0
    assert torch.get_num_threads() == len(os.sched_getaffinity(0))
    assert metrics(resumed) == metrics(run_dir)
    assert (resumed / "checkpoints" / "latest").read_text().strip() == "step_8"


def test_same_seed_same_run_any_worker_count(run_a, build, tmp_path):
    run_dir, _ = run_a
    train(config(build, tmp_path / "c", *SHORT, "num_workers=0", "eval_every=0", "checkpoint_every=100"))
    a = [l for l in metrics(run_dir) if l["split"] == "train"]
    assert [l for l in metrics(tmp_path / "c") if l["split"] == "train"] == a
    train(config(build, tmp_path / "d", *SHORT, "num_workers=0", "eval_every=0", "checkpoint_every=100", "seed=1"))
    assert [l["loss"] for l in metrics(tmp_path / "d") if l["split"] == "train"] != [l["loss"] for l in a]


def test_all_four_losses_fall(build, tmp_path):
    """Two epochs over the 512 items: each task's loss, averaged over the first and the last
    8 steps, falls; so does the validation loss."""
    summary = train(config(build, tmp_path / "e", "epochs=2", "min_steps=0", "log_every=8", "eval_every=32", "checkpoint_every=1000",
                           "num_workers=1", "lr=2e-3"))
    train_lines = [l for l in metrics(tmp_path / "e") if l["split"] == "train"]
    valid_lines = [l for l in metrics(tmp_path / "e") if l["split"] == "valid"]
    assert summary["steps"] == 64 and len(train_lines) == 8
    first, last = train_lines[0], train_lines[-1]
    for task in ("mlm_title", "mlm_knowledge", "mom", "lpm"):
        assert last[task] < 0.9 * first[task], (task, first[task], last[task])
    assert valid_lines[-1]["loss"] < valid_lines[0]["loss"]


def test_two_process_ddp_on_gloo(build, tmp_path):
    run_dir = tmp_path / "ddp"
    args = ["--config", str(REPO / "configs" / "pretrain_tiny.yaml")]
    for item in [f"build={build}", f"run_dir={run_dir}", *MICRO, "max_steps=4", "log_every=1", "eval_every=2",
                 "checkpoint_every=2", "num_workers=0"]:
        args += ["--set", item]
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone", "-m", "k3m.pretrain", *args],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 4
    lines = metrics(run_dir)
    assert [l["step"] for l in lines if l["split"] == "train"] == [1, 2, 3, 4]  # rank 0 writes alone
    state = torch.load(run_dir / "checkpoints" / "step_4" / "trainer_state.pt", weights_only=False)
    assert len(state["rng"]) == 2 and not torch.equal(state["rng"][0]["torch"], state["rng"][1]["torch"])
    # 2 x 16 items per step: an epoch of 512 items is 16 steps
    assert summary["epochs"] == pytest.approx(4 / 16)


def test_stats_reports_the_caps(build, tmp_path, capsys):
    cfg_args = ["--config", str(REPO / "configs" / "pretrain_tiny.yaml"), "--set", f"build={build}", "--set", "vocab_size=2000"]
    assert main([*cfg_args, "--stats"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["items"] == 549 and report["pairs"] > report["dropped_by_max_pairs"] > 0


def test_a_non_finite_loss_stops_training_with_an_error(micro_checkpoint, tmp_path, capsys):
    """Resuming from a checkpoint whose weights hold NaN: the loss is NaN from the first step.
    Training used to log `loss nan`, save NaN checkpoints and exit 0."""
    from safetensors.numpy import load_file, save_file

    from k3m.cli import main as k3m
    from k3m.model.checkpoint import find_checkpoint

    run = tmp_path / "nan-run"
    shutil.copytree(micro_checkpoint, run)
    ckpt = find_checkpoint(run)
    weights = load_file(str(ckpt / "model.safetensors"))
    weights["stem.text_encoder.bert.embeddings.LayerNorm.weight"][:] = np.nan
    save_file(weights, str(ckpt / "model.safetensors"))
    assert k3m(["pretrain", "--resume", str(run), "--set", "max_steps=9", "--set", "checkpoint_every=1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("k3m pretrain: error: training stopped at step 7: the loss is not finite (loss nan")
    assert err.count("\n") == 1
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["latest", ckpt.name]  # nothing saved after it
