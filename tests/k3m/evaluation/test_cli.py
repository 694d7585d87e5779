"""`k3m evaluate` end to end on the real fashion600 slice: it pretrains the compared
models itself (micro size, a few steps), runs every task over a small grid, writes the
results, CSV, report and figures, and a second run resumes without redoing anything."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from k3m.cli import main as k3m_main

REPO = Path(__file__).resolve().parents[3]


def main(argv: list[str]) -> int:
    return k3m_main(["evaluate", *argv])


@pytest.fixture(scope="module")
def run(fashion_slice_build, tmp_path_factory):
    out = tmp_path_factory.mktemp("evaluate") / "grid"
    argv = ["--config", str(REPO / "configs" / "evaluate_test.yaml"), "--build", str(fashion_slice_build), "--out", str(out),
            "--set", f"pretrain.config={REPO / 'configs' / 'pretrain_tiny.yaml'}", "--set", f"pretrain.run_root={out / 'pretrain'}"]
    # K3M is pretrained ahead by --pretrain-only (as beside a running grid); the grid reuses
    # it and pretrains no-KG itself
    assert main(argv + ["--pretrain-only", "--set", "models=[k3m]"]) == 0
    assert (out / "pretrain" / "k3m" / "summary.json").is_file() and not (out / "pretrain" / "no_kg").exists()
    assert not (out / "results.jsonl").exists()  # --pretrain-only writes no results
    assert main(argv) == 0
    return out, argv


def lines(path: Path) -> list[dict]:
    return [json.loads(l) for l in path.read_text().splitlines()]


def test_every_cell_of_the_grid_is_written(run):
    out, _ = run
    cells = [r for r in lines(out / "results.jsonl") if r["kind"] == "cell"]
    keys = {(c["task"], c["setting"], c["ratio"], c["model"]) for c in cells}
    conditions = [("clean", 0.0), ("TMR", 1.0), ("TINR", 1.0)]
    expected = {(t, s, r, "k3m") for t in ("classification", "alignment", "qa", "qa_lpm") for s, r in conditions}
    expected |= {(t, s, r, "no_kg") for t in ("classification", "alignment", "qa") for s, r in conditions}
    expected |= {("link_prediction", "clean", 0.0, m) for m in ("k3m", "transe")}
    assert keys == expected and len(cells) == len(expected)
    for c in cells:
        assert all(0.0 <= v <= 1.0 for k, v in c["metrics"].items() if not k.endswith("mean_rank"))
        if c["task"] == "link_prediction":  # both views; fewer competitors can only help
            assert c["metrics"]["typed_mrr"] >= c["metrics"]["mrr"]
    # the corruption reaches the no-KG model: with title and image from other items its
    # classification is not the clean one
    acc = {(c["setting"], c["ratio"]): c["metrics"]["accuracy"] for c in cells
           if c["model"] == "no_kg" and c["task"] == "classification"}
    assert acc[("TINR", 1.0)] != acc[("clean", 0.0)]
    pretrained = {t["name"]: t for t in lines(out / "results.jsonl") if t.get("part") == "pretrain"}
    assert set(pretrained) == {"k3m", "no_kg"}
    # the ahead-of-time pretraining is timed from its run's summary, and marked as such
    assert pretrained["k3m"].get("elsewhere") is True and pretrained["k3m"]["seconds"] > 0
    assert "elsewhere" not in pretrained["no_kg"] and pretrained["no_kg"]["seconds"] > 0


def test_report_csv_and_figures(run):
    out, _ = run
    report = (out / "report.md").read_text()
    assert "## The question (probe mode)" in report and "K3M − no-KG" in report
    assert "TransE (PyKEEN)" in report and "paper: K3M" in report and "## Time" in report
    table = pd.read_csv(out / "results.csv")
    assert {"task", "mode", "metric", "setting", "model", "0%", "100%"} <= set(table.columns)
    # the clean cell is shown under every setting
    acc = table[(table.task == "classification") & (table.metric == "accuracy") & (table.model == "k3m")]
    assert set(acc.setting) == {"TMR", "TINR"} and acc["0%"].nunique() == 1
    figures = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert "classification_accuracy_probe.png" in figures and "qa_rankat10_probe.png" in figures
    assert all((out / "figures" / f).stat().st_size > 10_000 for f in figures)


def test_a_second_run_resumes_without_redoing_anything(run):
    out, argv = run
    before = (out / "results.jsonl").read_text()
    assert main(argv) == 0
    after = lines(out / "results.jsonl")
    new = [r for r in after[len(before.splitlines()):]]
    assert [r["part"] for r in new] == ["run"]  # only the run's own wall-time line


def test_resuming_under_another_budget_is_refused(run, capsys):
    out, argv = run
    assert main(argv + ["--set", "pools.finetune_items=100"]) == 2
    assert "another pools" in capsys.readouterr().err


def test_bad_config_is_an_error(tmp_path, capsys):
    assert main(["--config", str(REPO / "configs" / "evaluate_test.yaml"), "--set", "models=[k3m, vilbert]"]) == 2
    assert "unknown model" in capsys.readouterr().err
    assert main(["--config", str(REPO / "configs" / "evaluate_test.yaml"), "--set", "pools.test_item=5"]) == 2
    assert "unknown evaluation config key(s) pools.test_item" in capsys.readouterr().err


def test_a_model_being_pretrained_elsewhere_is_waited_for_or_skipped(tmp_path):
    """The per-model lock: with the lock held (as by another process), a non-waiting
    pretraining returns None at once and touches nothing."""
    import fcntl

    from k3m.evaluation.config import EvaluationConfig
    from k3m.evaluation.models import MODELS, pretrain_model

    cfg = EvaluationConfig.load(str(REPO / "configs" / "evaluate_test.yaml"), [f"pretrain.run_root={tmp_path}"])
    with open(tmp_path / "k3m.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert pretrain_model(MODELS["k3m"], cfg.pretrain, "no/such/build", cfg.seed, wait=False) is None
    assert not (tmp_path / "k3m").exists()


def test_redo_recomputes_one_task_and_keeps_the_time_sums_whole(run, capsys):
    out, argv = run
    before = lines(out / "results.jsonl")
    lp_before = {c["model"]: c["metrics"] for c in before if c.get("task") == "link_prediction"}
    assert main(argv + ["--redo", "link_prediction"]) == 0
    after = lines(out / "results.jsonl")
    lp_after = [c for c in after if c.get("task") == "link_prediction"]
    assert sorted(c["model"] for c in lp_after) == sorted(lp_before)  # once each, not twice
    assert {c["model"]: c["metrics"] for c in lp_after} == lp_before  # seeded: the same figures
    for part in ("encode_lp", "transe"):  # their times are the redone ones, not both
        assert len([t for t in after if t.get("part") == part]) == len([t for t in before if t.get("part") == part])
    # every other cell is kept untouched
    others = lambda records: [r for r in records if r.get("kind") == "cell" and r["task"] != "link_prediction"]
    assert others(after) == others(before)
    assert main(argv + ["--redo", "no_such_task"]) == 2
    assert "not a task of this grid" in capsys.readouterr().err
