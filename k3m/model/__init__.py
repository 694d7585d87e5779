"""The K3M model: configuration, batch (``batch``, ``batch_graph``, the encoder modes' typed
``inputs``), the model (``modeling``: a stem per encoder mode in ``stems``, the shared
``core``, the pretraining ``heads``), building blocks (``nn``) and checkpoints. Everything
else in ``k3m`` uses the model through this package.

    config = K3MConfig.from_preset("tiny")
    model = K3MModel(config)
    output = model(batch)            # batch: K3MBatch from k3m.data
    model.save_pretrained(directory) / K3MModel.from_pretrained(directory)
"""
from k3m.model.batch import K3MBatch, LPMTargets
from k3m.model.batch_graph import MENTIONED_BY, MENTIONS, VALUE_MENTION, Pairs, batch_graph
from k3m.model.configuration import CONFIG_NAME, K3MConfig
from k3m.model.inputs import (FeatureInputs, FeatureTargets, PixelImages, RegionImages, TokenInputs, TokenSequences,
                              TokenTargets)
from k3m.model.modeling import WEIGHTS_NAME, K3MModel, K3MOutput

__all__ = ["CONFIG_NAME", "MENTIONED_BY", "MENTIONS", "VALUE_MENTION", "WEIGHTS_NAME", "FeatureInputs", "FeatureTargets",
           "K3MBatch", "K3MConfig", "K3MModel", "K3MOutput", "LPMTargets", "Pairs", "PixelImages", "RegionImages",
           "TokenInputs", "TokenSequences", "TokenTargets", "batch_graph"]
