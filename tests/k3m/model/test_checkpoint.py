"""save_pretrained / from_pretrained mirror each other; mismatches are refused loudly;
a model initialised from the local all-MiniLM-L6-v2 directory really carries its weights."""
from __future__ import annotations

import json
import logging

import pytest
import torch

from encoders.text import load_tokenizer, minilm_dir
from encoders.weights import CheckpointMismatchError
from k3m.model import K3MConfig, K3MModel

pytestmark = pytest.mark.usefixtures("single_thread")


def test_round_trip_gives_equal_outputs(tiny_model_config, slice_tokenizer, make_batch, tmp_path):
    batch = make_batch(tiny_model_config, slice_tokenizer, n=4)
    model = K3MModel(tiny_model_config)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model(batch).losses["loss"].backward()  # move the weights off their initialisation
    optimizer.step()
    model.save_pretrained(tmp_path / "ckpt", tokenizer=slice_tokenizer)
    assert {"k3m_config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in (tmp_path / "ckpt").iterdir()}

    loaded = K3MModel.from_pretrained(tmp_path / "ckpt")
    assert loaded.config == model.config
    assert torch.equal(loaded.encode_items(batch), model.encode_items(batch))
    ids = batch.inputs.values.input_ids, batch.inputs.values.attention_mask
    with torch.no_grad():
        assert torch.equal(loaded.eval().encode_strings(*ids), model.eval().encode_strings(*ids))
    tokenizer = load_tokenizer(tmp_path / "ckpt")
    assert tokenizer("Navy Blue Shirt")["input_ids"] == slice_tokenizer("Navy Blue Shirt")["input_ids"]


def test_mismatched_checkpoint_is_refused_naming_the_keys(tiny_model_config, tmp_path, caplog):
    K3MModel(tiny_model_config).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "k3m_config.json").read_text())
    config["text"]["num_layers"] = 3  # the checkpoint has 2
    config["structure"]["heads"] = 8  # w2 changes shape
    (tmp_path / "k3m_config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointMismatchError) as err:
        K3MModel.from_pretrained(tmp_path)
    message = str(err.value)
    assert "missing keys: stem.text_encoder.bert.encoder.layer.2." in message
    assert "structure.att: checkpoint (1, 4, 32) vs model (1, 8, 16)" in message
    assert err.value.unexpected == []
    with caplog.at_level(logging.WARNING):
        partial = K3MModel.from_pretrained(tmp_path, strict=False)
    assert "missing keys" in caplog.text
    assert partial.config.text.num_layers == 3
    with pytest.raises(FileNotFoundError, match="not a K3M checkpoint"):
        K3MModel.from_pretrained(minilm_dir())


def test_minilm_initialisation_loads_the_real_weights(make_batch, tmp_path):
    """The original never loaded its pretrained BERT (a key-prefix mismatch): here the text
    encoder must reproduce transformers' own BertModel on the same directory."""
    from transformers import BertModel

    tokenizer = load_tokenizer(minilm_dir())
    config = K3MConfig.from_preset("tiny").with_pretrained_text(minilm_dir())
    assert (config.text.vocab_size, config.text.hidden_size, config.text.num_layers) == (30522, 384, 6)
    model = K3MModel(config).eval()
    reference = BertModel.from_pretrained(str(minilm_dir()), add_pooling_layer=False).eval()
    enc = tokenizer(["Turtle Check Men Navy Blue Shirt", "Puma Men Grey T-shirt"], padding=True, return_tensors="pt")
    mask = enc["attention_mask"].bool()
    with torch.no_grad():
        ours = model.stem.text_encoder(enc["input_ids"], mask)
        theirs = reference(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
    torch.testing.assert_close(ours[mask], theirs[mask], atol=1e-5, rtol=1e-4)

    batch = make_batch(config, tokenizer, n=2)  # the pipeline with the MiniLM tokenizer
    out = model.train()(batch)
    assert out.item_repr.shape == (2, 384) and torch.isfinite(out.losses["loss"])

    # the checkpoint carries the weights itself: the original directory is not read again
    model.save_pretrained(tmp_path, tokenizer=tokenizer)
    saved = json.loads((tmp_path / "k3m_config.json").read_text())
    saved["text"]["pretrained_text_dir"] = str(tmp_path / "moved-away")
    (tmp_path / "k3m_config.json").write_text(json.dumps(saved))
    loaded = K3MModel.from_pretrained(tmp_path)
    torch.testing.assert_close(loaded.encode_items(batch), model.encode_items(batch))


def test_pretrained_directory_that_does_not_fit_the_config_is_refused():
    config = K3MConfig.from_preset("tiny", text={"pretrained_text_dir": str(minilm_dir())})  # sizes not taken from it
    with pytest.raises(CheckpointMismatchError) as err:
        K3MModel(config)
    message = str(err.value)
    assert "embeddings.word_embeddings.weight: checkpoint (30522, 384) vs model (8000, 128)" in message
    assert "unexpected keys: encoder.layer.2." in message
