"""The K3M model: configuration, batch, modeling, building blocks (``nn``), pretraining heads
(``heads``) and checkpoints. Everything else in ``k3m`` uses the model through this package.

    config = K3MConfig.from_preset("tiny")
    model = K3MModel(config)
    output = model(batch)            # batch: K3MBatch from k3m.data
    model.save_pretrained(directory) / K3MModel.from_pretrained(directory)
"""
from k3m.model.batch import K3MBatch
from k3m.model.configuration import CONFIG_NAME, K3MConfig
from k3m.model.modeling import WEIGHTS_NAME, K3MModel, K3MOutput

__all__ = ["CONFIG_NAME", "WEIGHTS_NAME", "K3MBatch", "K3MConfig", "K3MModel", "K3MOutput"]
