"""ResolvedRun: a run's checkpoint resolved once, and everything read from that checkpoint."""
from __future__ import annotations

import hashlib
import shutil

from k3m.model.run import ResolvedRun


def _damaged_latest(micro_checkpoint, tmp_path):
    """A copy of the micro run with an earlier complete step_3 and a cut latest checkpoint."""
    run = tmp_path / "micro"
    shutil.copytree(micro_checkpoint, run)
    latest = ResolvedRun.resolve(run).path
    earlier = latest.with_name("step_3")
    shutil.copytree(latest, earlier)
    weights = latest / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return run, latest, earlier


def test_a_run_is_resolved_once_and_read_from_that_checkpoint(micro_checkpoint, tmp_path, capsys):
    run, latest, earlier = _damaged_latest(micro_checkpoint, tmp_path)
    capsys.readouterr()
    resolved = ResolvedRun.resolve(run)
    assert resolved.path == earlier and ResolvedRun.resolve(resolved) is resolved
    sha = hashlib.sha256((earlier / "model.safetensors").read_bytes()).hexdigest()
    assert resolved.weights_sha256 == sha and resolved.model_id == f"micro-step_3-{sha[:10]}"
    assert resolved.property_order and resolved.config.hidden_size == 32
    # a newer checkpoint appearing meanwhile does not change what the resolved run reads
    newer = latest.with_name("step_9")
    shutil.copytree(earlier, newer)
    (run / "checkpoints" / "latest").write_text("step_9\n")
    loaded = resolved.load()
    assert loaded.path == earlier and loaded.property_order == resolved.property_order
    assert capsys.readouterr().err.count("warning: the latest checkpoint is incomplete") == 1


def test_a_resume_resolves_the_checkpoint_once(micro_checkpoint, tmp_path, capsys):
    """`k3m pretrain --resume RUN` read the run's config from one resolution of its latest
    checkpoint and trained from another: a damaged latest was warned about twice."""
    from k3m.cli import main

    run, _, earlier = _damaged_latest(micro_checkpoint, tmp_path)
    capsys.readouterr()
    assert main(["pretrain", "--resume", str(run)]) == 0
    err = capsys.readouterr().err
    assert err.count("warning: the latest checkpoint is incomplete") == 1 and f"using {earlier}" in err
