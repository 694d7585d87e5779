"""`k3m pretrain --features`: the feature cache filled (and checked) for a build, in this
process or on Ray; the engine options belong to --features only."""
from __future__ import annotations

from pathlib import Path

import pytest

from k3m.cli import main

REPO = Path(__file__).resolve().parents[3]


def test_features_fills_and_checks_the_cache_with_either_engine(fashion_slice_build, frozen_slice_index, capsys):
    # the session cache already holds the slice (frozen_slice_index): nothing to compute, all checked
    for engine in (["--engine", "local"], ["--engine", "ray", "--workers", "2"]):
        assert main(["pretrain", "--config", str(REPO / "configs" / "pretrain_cpu.yaml"), "--set", f"build={fashion_slice_build}",
                     "--set", "model.image.image_size=96", "--features", *engine]) == 0
        assert capsys.readouterr().out.strip() == f"features of {fashion_slice_build}: {frozen_slice_index.features.path}"


@pytest.mark.parametrize("args, said", [
    (["--engine", "ray"], "--engine, --address and --workers go with --features"),
    (["--features", "--address", "127.0.0.1:6379"], "--address needs --engine ray"),
    (["--features", "--workers", "0"], "--workers must be at least 1"),
])
def test_engine_options_outside_features_are_refused(fashion_slice_build, capsys, args, said):
    assert main(["pretrain", "--config", str(REPO / "configs" / "pretrain_cpu.yaml"), "--set", f"build={fashion_slice_build}",
                 *args]) == 2
    assert capsys.readouterr().err.strip() == f"k3m pretrain: error: {said}"
