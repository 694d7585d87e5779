"""Checkpoints written before K3MModel was split into stem, core and heads still load: the key
lists of data/legacy_state_dict_keys.json are what that code wrote for two micro models (one
per encoder mode, adaptive task weights on), recorded from it."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from k3m.model import K3MConfig, K3MModel
from k3m.model.legacy_keys import upgrade_state_dict
from k3m.model.modeling import WEIGHTS_NAME
from k3m.training.prepare import resolve_text_dir

LEGACY = json.loads((Path(__file__).parent / "data" / "legacy_state_dict_keys.json").read_text())
MICRO = {"image": {"hidden_size": 32, "intermediate_size": 64, "num_heads": 2},
         "co_attention": {"hidden_size": 32, "intermediate_size": 64, "num_heads": 2}, "structure": {"heads": 2},
         "loss": {"adaptive": True}}
CONFIGS = {
    "tiny": lambda: K3MConfig.from_preset("tiny", **MICRO, text={"hidden_size": 32, "intermediate_size": 64, "num_layers": 1,
                                                                   "num_heads": 2, "vocab_size": 100}),
    # the cpu preset as it was when those keys were recorded: no kept path, no matching or consistency head, 96 px
    "cpu": lambda: resolve_text_dir(K3MConfig.from_preset("cpu", **{**MICRO, "image": {**MICRO["image"], "image_size": 96},
                                                                    "loss": {"adaptive": True, "matching": 0.0, "consistency": 0.0}},
                                                          keep={"title": 0, "image": 0, "knowledge": 0, "distrust": False},
                                                          text={"hidden_size": 32, "num_heads": 2})),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_old_keys_name_every_tensor_in_the_same_order(name):
    """Renamed, the old keys are the model's keys with the same shapes, in the same order (so
    the optimizer state of an old run, kept by parameter position, lines up too)."""
    model = K3MModel(CONFIGS[name]())
    old = LEGACY[name]
    renamed = upgrade_state_dict(dict.fromkeys(old))
    assert list(renamed) == list(model.state_dict())
    assert [old[k] for k in old] == [list(t.shape) for t in model.state_dict().values()]
    assert list(upgrade_state_dict(model.state_dict())) == list(renamed)  # the current layout stays as it is


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_a_checkpoint_with_old_keys_loads_to_the_same_model(name, tmp_path):
    torch.manual_seed(0)
    model = K3MModel(CONFIGS[name]())
    model.save_pretrained(tmp_path)
    state = model.state_dict()  # renamed to the old layout by position (the same order: test above)
    save_file({old: state[new].contiguous() for old, new in zip(LEGACY[name], state)}, str(tmp_path / WEIGHTS_NAME))
    assert set(load_file(str(tmp_path / WEIGHTS_NAME))) == set(LEGACY[name])
    loaded = K3MModel.from_pretrained(tmp_path)
    for (key, x), y in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(x, y), key
