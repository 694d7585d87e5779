"""The heads registry: each encoder mode's heads by name, what switches and weights remove,
the order losses are summed in, and a task added as one more entry."""
import pytest
import torch

from k3m.model import K3MConfig, K3MModel
from k3m.model.heads import HEADS, TaskHead, build_heads
from k3m.model.stems import build_stem

pytestmark = pytest.mark.usefixtures("single_thread")


def heads_of(config):
    return build_heads(config, build_stem(config))


def test_the_heads_of_each_mode(tiny_model_config, frozen_config):
    trainable = heads_of(tiny_model_config)
    assert list(trainable) == ["mlm", "mom", "lpm"] and trainable["mlm"].tasks == ("mlm_title", "mlm_knowledge")
    assert list(heads_of(frozen_config)) == ["mlm_title", "mom", "mlm_knowledge", "lpm", "matching", "consistency"]
    assert [h.tasks for h in heads_of(frozen_config).values()] == [("mlm_title",), ("mom",), ("mlm_knowledge",), ("lpm",),
                                                                    ("matching",), ("consistency",)]


@pytest.mark.parametrize("overrides, heads", [
    ({"use_image": False}, {"mlm", "lpm"}),
    ({"use_knowledge": False}, {"mlm", "mom"}),
    ({"loss": {"mlm_title": 0, "mlm_knowledge": 0}}, {"mom", "lpm"}),
    ({"loss": {"lpm": 0}}, {"mlm", "mom"}),
])
def test_switches_and_zero_weights_remove_heads(overrides, heads, slice_tokenizer):
    assert set(heads_of(K3MConfig.from_preset("tiny", **overrides).with_tokenizer(slice_tokenizer))) == heads


def test_mlm_serves_only_the_tasks_it_has(slice_tokenizer):
    config = K3MConfig.from_preset("tiny", use_title=False).with_tokenizer(slice_tokenizer)
    assert heads_of(config)["mlm"].tasks == ("mlm_knowledge",)


class Constant(TaskHead):
    """A task added by one registry entry (a weight of the same name in LossConfig)."""

    tasks = ("lpm",)

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))

    def losses(self, ctx):
        return {"lpm": self.scale * ctx.item_repr.pow(2).mean()}


def test_a_head_added_to_the_registry_trains(monkeypatch, tiny_model_config, slice_tokenizer, make_batch):
    monkeypatch.setitem(HEADS, "trainable", {**HEADS["trainable"], "lpm": lambda config, stem: Constant()})
    model = K3MModel(tiny_model_config)
    assert isinstance(model.heads["lpm"], Constant)
    out = model(make_batch(tiny_model_config, slice_tokenizer, n=3))
    assert list(out.losses) == ["mlm_title", "mlm_knowledge", "mom", "lpm", "loss"]
    torch.testing.assert_close(out.losses["lpm"], out.item_repr.pow(2).mean())
    out.losses["loss"].backward()
    assert model.heads["lpm"].scale.grad is not None
