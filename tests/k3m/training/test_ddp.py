"""DistributedDataParallel under torchrun: 2 processes, gloo on CPU, the CPU default model
(frozen encoders, configs/pretrain_cpu.yaml) made narrow, on the real fashion600 slice.

Each rank records what it did (a small driver around ``k3m.training.loop.train``: the batches
its sampler gave, the kept path's statistics as fitted on that rank, its weights at the
checkpoint), so the test sees both ranks, not only rank 0's files."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[3]
MICRO = ["model.text.hidden_size=32", "model.text.num_heads=2", "model.image.hidden_size=32", "model.image.num_heads=2",
         "model.image.intermediate_size=64", "model.co_attention.hidden_size=32", "model.co_attention.num_heads=2",
         "model.co_attention.intermediate_size=64", "model.structure.heads=2", "batch_size=16", "valid_items=32",
         "train_items=256", "progress=false", "num_workers=0", "lr=3e-3", "threads=1"]
STEPS = 12

DRIVER = r"""
import json, os, sys
import torch
from k3m.data.loader import EpochBatchSampler
from k3m.training import loop
from k3m.training.config import TrainConfig

out, rank = sys.argv[1], int(os.environ["RANK"])
batches = []
iterate = EpochBatchSampler.__iter__

def recorded(self):
    for batch in iterate(self):
        if self.shard.shuffle:  # the train sampler (validation's is not shuffled)
            batches.append([row for _, row in batch])
        yield batch

EpochBatchSampler.__iter__ = recorded
fit = loop.fit_kept_features

def fit_and_keep(model, *args, **kwargs):
    done = fit(model, *args, **kwargs)
    torch.save({k: v.clone() for k, v in model.kept.state_dict().items()}, f"{out}/kept{rank}.pt")
    return done

loop.fit_kept_features = fit_and_keep
save = loop.save_training_checkpoint

def save_and_keep(cfg, dist, position, model, *args):
    torch.save({k: v.detach().clone() for k, v in model.state_dict().items()}, f"{out}/weights{rank}_{position.step}.pt")
    return save(cfg, dist, position, model, *args)

loop.save_training_checkpoint = save_and_keep
loop.train(TrainConfig.load(sys.argv[2], sys.argv[3:]))
json.dump(batches, open(f"{out}/batches{rank}.json", "w"))
"""


def test_torchrun_ddp_on_gloo_trains_one_model_on_sharded_data(fashion_slice_build, frozen_slice_index, tmp_path):
    """Both ranks train (each on its own half of every epoch), the kept statistics fitted on
    each rank are the same, the weights are equal on both ranks at every checkpoint, rank 0
    writes the checkpoint and the logs, and the loss falls."""
    run_dir, out = tmp_path / "run", tmp_path / "ranks"
    out.mkdir()
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    overrides = [f"build={fashion_slice_build}", f"run_dir={run_dir}", *MICRO, f"max_steps={STEPS}", "log_every=2",
                 "eval_every=6", "checkpoint_every=6"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone", str(driver), str(out),
         str(REPO / "configs" / "pretrain_cpu.yaml"), *overrides],
        cwd=REPO, capture_output=True, text=True, timeout=600, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]

    # rank 0 wrote the run: the summary, one metrics line per logged step, the checkpoints
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == STEPS
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train_lines = [m for m in metrics if m["split"] == "train"]
    assert [m["step"] for m in train_lines] == list(range(2, STEPS + 1, 2))
    assert train_lines[-1]["loss"] < train_lines[0]["loss"]
    valid = [m for m in metrics if m["split"] == "valid"]
    assert len(valid) == 2 and valid[-1]["loss"] < valid[0]["loss"]
    assert (run_dir / "checkpoints" / f"step_{STEPS}" / "model.safetensors").is_file()

    # the kept path is fitted on every rank from the same items: the same statistics
    kept = [torch.load(out / f"kept{r}.pt") for r in (0, 1)]
    assert bool(kept[0]["fitted"]) and kept[0].keys() == kept[1].keys()
    for name in kept[0]:
        assert torch.equal(kept[0][name], kept[1][name]), name

    # one model: the weights (and buffers) are equal on both ranks at each checkpoint, and move
    for step in (6, STEPS):
        w0, w1 = (torch.load(out / f"weights{r}_{step}.pt") for r in (0, 1))
        assert w0.keys() == w1.keys()
        for name in w0:
            assert torch.equal(w0[name], w1[name]), (step, name)
    first, last = torch.load(out / "weights0_6.pt"), torch.load(out / f"weights0_{STEPS}.pt")
    assert any(not torch.equal(first[n], last[n]) for n in first if first[n].is_floating_point())

    # sharded data: per epoch the ranks see disjoint halves of the train items
    from k3m.training.prepare import split_rows
    from etl.catalog_build import CatalogBuild

    train_rows = set(split_rows(CatalogBuild.open(fashion_slice_build), "train", 256).tolist())
    seen = [json.loads((out / f"batches{r}.json").read_text()) for r in (0, 1)]
    assert len(seen[0]) == len(seen[1]) == STEPS  # one micro-batch per step on each rank
    per_epoch = 256 // (2 * 16)  # 8 steps: an epoch is 256 items over 2 ranks of 16
    for epoch in range(-(-STEPS // per_epoch)):
        part = slice(epoch * per_epoch, (epoch + 1) * per_epoch)
        a, b = (np.concatenate(s[part]) for s in seen)
        assert not set(a.tolist()) & set(b.tolist())
        assert set(a.tolist()) | set(b.tolist()) <= train_rows
    later = STEPS - per_epoch  # the second epoch's batches so far: another order than the first's
    assert seen[0][per_epoch:] != seen[0][:later]
