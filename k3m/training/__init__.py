"""Pretraining: ``train(TrainConfig)``; the loop is k3m.training.loop, the command line
``python -m k3m.pretrain`` (k3m.training.cli)."""
from k3m.training.config import TrainConfig
from k3m.training.loop import train, train_step, validate

__all__ = ["TrainConfig", "train", "train_step", "validate"]
