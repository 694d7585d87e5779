"""Pretraining with frozen encoders (configs/pretrain_cpu.yaml, the CPU default) on the real fashion600
slice: the features come from the cache, all four losses fall, a resume is exact."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from k3m.pretrain import main
from k3m.training import TrainConfig, train

REPO = Path(__file__).resolve().parents[3]
MICRO = ["model.text.hidden_size=32", "model.text.num_heads=2", "model.image.hidden_size=32", "model.image.num_heads=2",
         "model.image.intermediate_size=64", "model.co_attention.hidden_size=32", "model.co_attention.num_heads=2",
         "model.co_attention.intermediate_size=64", "model.structure.heads=2", "model.image.image_size=96",
         "batch_size=32", "valid_items=32",
         "progress=false", "num_workers=0", "lr=3e-3"]


def lines(run_dir, split):
    out = [json.loads(l) for l in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in l.items() if k not in ("items_per_s", "data_wait_frac")} for l in out if l["split"] == split]


def test_losses_fall_and_a_resume_is_exact(fashion_slice_build, frozen_slice_index, tmp_path, capsys):
    run = tmp_path / "frozen"
    overrides = [f"build={fashion_slice_build}", f"run_dir={run}", *MICRO, "max_steps=36", "log_every=6",
                 "eval_every=18", "checkpoint_every=18"]
    summary = train(TrainConfig.load(REPO / "configs" / "pretrain_cpu.yaml", overrides))
    assert summary["steps"] == 36
    assert "] step 36/36  loss " in capsys.readouterr().err  # progress: false still says where the run is
    train_lines = lines(run, "train")
    first, last = train_lines[0], train_lines[-1]
    for task in ("mlm_title", "mlm_knowledge", "mom", "lpm"):
        assert last[task] < 0.95 * first[task], (task, first[task], last[task])
    valid = lines(run, "valid")
    assert valid[-1]["loss"] < valid[0]["loss"]
    # resume from step 18 (default thread count): steps 19-36 are the uninterrupted run's
    resumed = tmp_path / "resumed"
    shutil.copytree(run, resumed)
    shutil.rmtree(resumed / "checkpoints" / "step_36")
    (resumed / "checkpoints" / "latest").write_text("step_18\n")
    assert main(["--resume", str(resumed)]) == 0
    assert lines(resumed, "train") == train_lines and lines(resumed, "valid") == valid


def test_distrust_is_switched_off_when_the_consistency_head_does_not_judge_validation_items(fashion_slice_build, tmp_path,
                                                                                            capsys):
    """The saved model distrusts shown titles and photos only when the consistency head's
    validation loss is below keep.distrust_max_valid_loss (6 steps: far above 0, far below 10)."""
    from k3m.model import K3MConfig

    saved = {}
    for limit in (0.0, 10.0):
        run = tmp_path / f"limit-{limit}"
        summary = train(TrainConfig.load(REPO / "configs" / "pretrain_cpu.yaml", [
            f"build={fashion_slice_build}", f"run_dir={run}", *MICRO, "max_steps=6", "eval_every=0",
            "checkpoint_every=6", f"model.keep.distrust_max_valid_loss={limit}"]))
        assert summary["valid"]["consistency"] > 0
        saved[limit] = K3MConfig.load(run / "checkpoints" / "step_6").keep.distrust
    assert saved == {0.0: False, 10.0: True}
    assert capsys.readouterr().err.count("keep.distrust switched off") == 1
