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


def _copy_run(micro_checkpoint, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(micro_checkpoint, run)
    return run


def _truncate(file):
    data = file.read_bytes()
    file.write_bytes(data[: len(data) // 2])


def test_a_truncated_checkpoint_is_one_error_line_naming_the_file(micro_checkpoint, slice_view, tmp_path, capsys):
    """`k3m embed --checkpoint` on a model.safetensors cut in half used to end in a
    SafetensorError traceback (exit 1)."""
    from k3m.cli import main
    from k3m.model.checkpoint import CheckpointError, find_checkpoint, load_checkpoint

    run = _copy_run(micro_checkpoint, tmp_path)
    ckpt = find_checkpoint(run)
    weights = ckpt / "model.safetensors"
    _truncate(weights)
    assert main(["embed", "--checkpoint", str(ckpt), str(slice_view("truncated")), "--no-graph"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"k3m embed: error: {weights}: truncated (") and err.count("\n") == 1
    with pytest.raises(CheckpointError, match="no complete one"):  # the run's only checkpoint
        find_checkpoint(run)
    with pytest.raises(CheckpointError, match=str(weights)):
        load_checkpoint(ckpt)
    weights.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(CheckpointError, match="corrupt header"):
        load_checkpoint(ckpt)


def test_the_latest_checkpoint_of_a_run_skips_an_incomplete_one(micro_checkpoint, tmp_path, capsys):
    import shutil

    from k3m.model.checkpoint import find_checkpoint, load_checkpoint

    run = _copy_run(micro_checkpoint, tmp_path)
    latest = find_checkpoint(run)
    earlier = latest.with_name("step_3")
    shutil.copytree(latest, earlier)  # an earlier complete checkpoint of the same run
    _truncate(latest / "model.safetensors")
    capsys.readouterr()
    assert find_checkpoint(run) == earlier
    err = capsys.readouterr().err
    assert err.startswith(f"[k3m] warning: the latest checkpoint is incomplete ({latest / 'model.safetensors'}: truncated (")
    assert err.endswith(f"); using {earlier}, the newest complete one\n") and err.count("\n") == 1
    assert load_checkpoint(run).path == earlier
    assert find_checkpoint(latest) == latest  # named directly: no other is chosen for it
