"""K3MConfig: presets, plain-file round trips, strictness."""
from __future__ import annotations

import dataclasses

import pytest

from encoders.text import minilm_dir
from k3m.model import K3MConfig


def test_presets():
    tiny, base, cpu = K3MConfig.from_preset("tiny"), K3MConfig.from_preset("base"), K3MConfig.from_preset("cpu")
    assert (tiny.text.hidden_size, tiny.text.num_layers, tiny.co_attention.title_image_layers) == (128, 2, 1)
    assert (tiny.image.image_size, tiny.image.patch_size, tiny.num_visual_tokens) == (64, 8, 64)
    # base (GPU, fine-tune mode): MiniLM and EfficientNet-Lite0 trainable, 6 co-attention layers per pair
    assert not base.frozen and base.text.pretrained_text_dir == "minilm" and base.image.kind == "efficientnet"
    assert (base.image.image_size, base.num_visual_tokens, base.image.hidden_size, base.image.num_layers) == (224, 49, 768, 2)
    assert base.co_attention.knowledge_image_layers == 6 and base.structure.heads == 8
    # cpu (the CPU default): frozen MiniLM / EfficientNet features, 96 px (3 x 3 grid)
    assert cpu.frozen and cpu.text.pretrained_text_dir == "minilm" and cpu.text.feature_size == 384
    # the cpu preset's image resolution is chosen for the catalog when pretraining starts (0 until then);
    # whatever it is, the cached grid is pooled to 3 x 3 tokens
    assert (cpu.image.kind, cpu.image.image_size, cpu.image.feature_grid) == ("efficientnet", 0, 3)
    for size in (96, 160, 224):
        assert dataclasses.replace(cpu, image=dataclasses.replace(cpu.image, image_size=size)).num_visual_tokens == 9
    assert (tiny.text.max_title_tokens, tiny.text.max_knowledge_tokens, tiny.text.max_pairs) == (36, 48, 10)
    assert tiny.preset == "tiny" and K3MConfig().preset is None
    assert K3MConfig.from_preset("tiny", image={"kind": "cnn"}).num_visual_tokens == 4
    assert K3MConfig.from_preset("tiny", image={"kind": "region"}).num_visual_tokens == 36
    with pytest.raises(ValueError, match="known: \\['base', 'cpu', 'tiny'\\]"):
        K3MConfig.from_preset("huge")


@pytest.mark.parametrize("filename", ["k3m_config.json", "k3m.yaml"])
def test_save_load_round_trip(filename, tmp_path):
    config = K3MConfig.from_preset("tiny", fusion={"iifm": "soft"}, use_image=False, lpm={"margin": 2.5})
    path = config.save(tmp_path, filename)
    assert K3MConfig.load(path) == config
    assert K3MConfig.from_dict(config.to_dict()) == config
    if filename.endswith(".json"):
        assert K3MConfig.load(tmp_path) == config  # a directory means its k3m_config.json


def test_unknown_keys_and_bad_values_are_errors():
    with pytest.raises(ValueError, match="unknown config key\\(s\\) text.hiden_size"):
        K3MConfig.from_dict({"text": {"hiden_size": 64}})
    with pytest.raises(ValueError, match="iifm"):
        K3MConfig.from_preset("tiny", fusion={"iifm": "max"})
    with pytest.raises(ValueError, match="at least one"):
        K3MConfig(use_title=False, use_image=False, use_knowledge=False)
    with pytest.raises(ValueError, match="not divisible"):
        K3MConfig.from_preset("tiny", structure={"heads": 3})


def test_sizes_from_a_pretrained_directory():
    config = K3MConfig.from_preset("tiny").with_pretrained_text(minilm_dir())
    assert (config.text.hidden_size, config.text.num_heads, config.text.vocab_size) == (384, 12, 30522)
    assert config.text.pretrained_text_dir == str(minilm_dir().resolve())
    assert config.hidden_size == 384 and config.image.hidden_size == 128  # the image stream keeps its width
