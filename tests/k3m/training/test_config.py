from pathlib import Path

import pytest

from k3m.config import apply_overrides
from k3m.training.config import TrainConfig

CONFIGS = Path(__file__).resolve().parents[3] / "configs"


@pytest.mark.parametrize("name", ["tiny", "base", "cpu"])
def test_shipped_configs_load(name):
    cfg = TrainConfig.load(CONFIGS / f"{name}.yaml")
    preset = name
    assert cfg.model["preset"] == preset and cfg.model_config().preset == preset
    assert cfg.build == "data/builds/fashion44k"  # relative default; --set build=... elsewhere


def test_overrides_reach_nested_model_fields_and_parse_values():
    cfg = TrainConfig.load(CONFIGS / "tiny.yaml", [
        "lr=2e-3", "train_items=null", "betas=[0.9, 0.95]", "model.text.num_layers=3", "model.lpm.num_negatives=2",
    ])
    assert cfg.lr == 0.002 and cfg.train_items is None and cfg.betas == (0.9, 0.95)
    model = cfg.model_config()
    assert model.text.num_layers == 3 and model.lpm.num_negatives == 2 and model.text.hidden_size == 128
    assert TrainConfig.from_dict({"model": {"text": {"num_layers": 1}}}).model_config().preset == "tiny"


@pytest.mark.parametrize("bad, message", [
    (["learning_rate=1"], "unknown training config key"),
    (["model.text.layers=1"], "unknown config key"),
    (["tokenizer=bpe"], "tokenizer must be one of"),
    (["lr"], "expects key=value"),
    (["knowledge_as_title_text=true"], "use_knowledge=false"),
])
def test_bad_settings_fail_loudly(bad, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig.load(CONFIGS / "tiny.yaml", bad)


def test_round_trip_through_yaml(tmp_path):
    cfg = TrainConfig.load(CONFIGS / "tiny.yaml", ["knowledge_as_title_text=true", "model.use_knowledge=false"])
    cfg.save(tmp_path / "c.yaml")
    assert TrainConfig.load(tmp_path / "c.yaml") == cfg
    assert apply_overrides({"a": {"b": 1}}, ["a.c=x"]) == {"a": {"b": 1, "c": "x"}}
