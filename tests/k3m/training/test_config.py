from pathlib import Path

import pytest
import yaml

from k3m.config import apply_overrides
from k3m.model import K3MConfig
from k3m.training.config import DEFAULT_PRESET, TrainConfig

CONFIGS = Path(__file__).resolve().parents[3] / "configs"
PRESETS = {"pretrain_cpu": "cpu", "pretrain_tiny": "tiny", "pretrain_gpu": "base"}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_shipped_configs_load(name):
    cfg = TrainConfig.load(CONFIGS / f"{name}.yaml")
    assert isinstance(cfg.model, K3MConfig) and cfg.model.preset == PRESETS[name]
    assert cfg.model == K3MConfig.from_preset(PRESETS[name])
    assert cfg.build == "data/builds/fashion44k"  # relative default; --set build=... elsewhere


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_shipped_configs_state_only_overrides(name):
    """A training YAML restates no default: every key differs from TrainConfig's default,
    every model key from its preset's value."""
    data = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
    defaults = TrainConfig().to_dict()
    model = data.pop("model", {})
    restated = [key for key, value in data.items() if TrainConfig.from_dict({key: value}).to_dict()[key] == defaults[key]]
    assert restated == []
    preset = K3MConfig.from_preset(model.pop("preset", DEFAULT_PRESET)).to_dict()
    assert [key for key, value in model.items() if value == preset[key]] == []


def test_defaults_are_the_cpu_run():
    cfg = TrainConfig()
    assert cfg.model == K3MConfig.from_preset("cpu") and cfg.model.frozen
    assert (cfg.batch_size, cfg.epochs, cfg.lr, cfg.tokenizer) == (256, 4, 1e-3, "pretrained")
    assert TrainConfig.from_dict({"model": {"text": {"num_layers": 1}}}).model.preset == DEFAULT_PRESET == "cpu"


def test_overrides_reach_nested_model_fields_and_parse_values():
    cfg = TrainConfig.load(CONFIGS / "pretrain_tiny.yaml", [
        "lr=2e-3", "train_items=null", "betas=[0.9, 0.95]", "model.text.num_layers=3", "model.lpm.num_negatives=2",
    ])
    assert cfg.lr == 0.002 and cfg.train_items is None and cfg.betas == (0.9, 0.95)
    model = cfg.model
    assert model.text.num_layers == 3 and model.lpm.num_negatives == 2 and model.text.hidden_size == 128
    assert model.preset == "tiny"


@pytest.mark.parametrize("bad, message", [
    (["learning_rate=1"], "unknown training config key"),
    (["model.text.layers=1"], "model: unknown config key\\(s\\) text.layers"),
    (["model.preset=huge"], "model: unknown preset 'huge'"),
    (["model=3"], "model: expected a mapping"),
    (["tokenizer=bpe"], "tokenizer must be one of"),
    (["lr"], "expects key=value"),
    (["knowledge_as_title_text=true"], "use_knowledge=false"),
])
def test_bad_settings_fail_loudly(bad, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig.load(CONFIGS / "pretrain_tiny.yaml", bad)


def test_round_trip_through_yaml(tmp_path):
    cfg = TrainConfig.load(CONFIGS / "pretrain_tiny.yaml", ["knowledge_as_title_text=true", "model.use_knowledge=false"])
    cfg.save(tmp_path / "c.yaml")
    saved = yaml.safe_load((tmp_path / "c.yaml").read_text())
    assert saved["model"] == cfg.model.to_dict()  # the whole model config, as plain data
    assert TrainConfig.load(tmp_path / "c.yaml") == cfg
    assert apply_overrides({"a": {"b": 1}}, ["a.c=x"]) == {"a": {"b": 1, "c": "x"}}


def test_a_run_saved_with_a_preset_section_still_loads(tmp_path):
    """train_config.yaml of runs written before the model section was typed: a preset name
    and overrides, every other field spelled out."""
    saved = {**TrainConfig().to_dict(), "model": {"preset": "tiny", "text": {"hidden_size": 32}}}
    (tmp_path / "train_config.yaml").write_text(yaml.safe_dump(saved))
    cfg = TrainConfig.load(tmp_path / "train_config.yaml")
    assert cfg.model == K3MConfig.from_preset("tiny", text={"hidden_size": 32})
