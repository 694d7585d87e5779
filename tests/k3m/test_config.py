"""The one config base (k3m.config.Config): typed values, one unknown-key check, presets in
YAML only, and the same behaviour for the model, training and evaluation configs."""
from __future__ import annotations

from pathlib import Path

import pytest

from k3m.cli import main
from k3m.config import ConfigError
from k3m.evaluation.config import EvaluationConfig
from k3m.model import K3MConfig
from k3m.model.configuration import PRESET_DIR
from k3m.training.config import TrainConfig

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize("override, message", [
    ("max_steps=ten", "max_steps: expected int, got 'ten'"),
    ("batch_size=abc", "batch_size: expected int, got 'abc'"),
    ("lr=fast", "lr: expected float, got 'fast'"),
    ("progress=maybe", "progress: expected bool, got 'maybe'"),
    ("betas=[0.9, x]", r"betas\[1\]: expected float, got 'x'"),
    ("model.text.num_layers=two", "text.num_layers: expected int, got 'two'"),
    ("model.use_image=3", "use_image: expected bool, got 3"),
    ("model.text=5", "text: expected a mapping, got 5"),
])
def test_wrong_types_are_errors_naming_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig.load(CONFIGS / "pretrain_tiny.yaml", [override])


def test_yaml_1_1_numbers_and_nulls_are_read_as_meant():
    cfg = TrainConfig.load(CONFIGS / "pretrain_tiny.yaml", ["lr=2e-3", "max_steps=null", "weight_decay=0"])
    assert cfg.lr == 0.002 and cfg.max_steps is None and cfg.weight_decay == 0.0 and isinstance(cfg.weight_decay, float)


def test_evaluation_config_is_checked_the_same_way():
    with pytest.raises(ConfigError, match="pools.test_items: expected int, got 'many'"):
        EvaluationConfig.load(CONFIGS / "evaluate_test.yaml", ["pools.test_items=many"])
    with pytest.raises(ConfigError, match="unknown evaluation config key\\(s\\) pools.test_item"):
        EvaluationConfig.load(CONFIGS / "evaluate_test.yaml", ["pools.test_item=5"])
    with pytest.raises(ConfigError, match=r"ratios\[0\]: expected float, got 'half'"):
        EvaluationConfig.load(CONFIGS / "evaluate_test.yaml", ["ratios=[half]"])


@pytest.mark.parametrize("preset", sorted(p.stem for p in PRESET_DIR.glob("*.yaml")))
def test_every_preset_loads_and_round_trips(preset, tmp_path):
    config = K3MConfig.from_preset(preset)
    assert config.preset == preset
    assert K3MConfig.from_dict(config.to_dict()) == config
    assert K3MConfig.load(config.save(tmp_path)) == config
    assert K3MConfig.load(config.save(tmp_path, "k3m.yaml")) == config


def test_the_tiny_preset_is_the_defaults():
    """The dataclass defaults and presets/tiny.yaml state the same sizes: they cannot drift."""
    assert K3MConfig.from_preset("tiny") == K3MConfig(preset="tiny")


def test_cli_reports_a_bad_value_in_one_line(capsys):
    assert main(["pretrain", "--config", str(CONFIGS / "pretrain_tiny.yaml"), "--set", "max_steps=ten"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "k3m pretrain: error: max_steps: expected int, got 'ten'"


def test_a_key_given_twice_in_a_config_file_is_an_error(tmp_path, capsys):
    """The real tiny config with a second `lr:` appended (YAML used to keep the last one
    silently, while the mapping loader refused duplicates): one loader for both now."""
    text = (CONFIGS / "pretrain_tiny.yaml").read_text()
    assert "\nlr:" in text
    lines = text.splitlines()
    first = next(n for n, line in enumerate(lines, 1) if line.startswith("lr:"))
    config = tmp_path / "twice.yaml"
    config.write_text(text + "lr: 0.5\n")
    message = rf"{config}: lr: given twice \(lines {first} and {len(lines) + 1}\); YAML would keep only the last one silently"
    with pytest.raises(ConfigError, match=message):
        TrainConfig.load(config)
    assert main(["pretrain", "--config", str(config), "--stats"]) == 2
    assert capsys.readouterr().err.count("given twice") == 1
    as_json = tmp_path / "twice.json"
    as_json.write_text('{"lr": 0.001, "max_steps": 3, "lr": 0.5}')
    with pytest.raises(ConfigError, match="lr: given twice"):
        TrainConfig.load(as_json)
    with pytest.raises(ConfigError, match="given twice"):
        TrainConfig.load(CONFIGS / "pretrain_tiny.yaml", ["model.text={hidden_size: 32, hidden_size: 64}"])
