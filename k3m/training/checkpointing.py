"""A training checkpoint = the model checkpoint (k3m.model.checkpoint) + what an exact resume
needs: ``trainer_state.pt`` (step, epoch, position in the epoch, optimizer, scheduler, every
rank's RNG state) and the run's ``train_config.yaml``."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from etl.errors import InvalidValue
from k3m.model.checkpoint import save_checkpoint
from k3m.training.distributed import Dist, all_rng_states, set_rng_state

TRAINER_STATE = "trainer_state.pt"
TRAIN_CONFIG = "train_config.yaml"


@dataclass
class Position:
    """Where a run stands: optimizer steps done, epoch, and steps done within the epoch."""

    step: int = 0
    epoch: int = 0
    step_in_epoch: int = 0


def save_training_checkpoint(cfg, dist: Dist, position: Position, model, tokenizer, optimizer, scheduler, property_order) -> None:
    states = all_rng_states(dist)  # collective: every rank takes part
    if dist.main:
        trainer_state = {"step": position.step, "epoch": position.epoch, "step_in_epoch": position.step_in_epoch,
                         "rng": states, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}

        def extra(directory: Path) -> None:
            torch.save(trainer_state, directory / TRAINER_STATE)
            cfg.save(directory / TRAIN_CONFIG)

        save_checkpoint(cfg.run_dir, position.step, model, tokenizer, property_order, cfg.keep_checkpoints, extra)
    dist.barrier()


def restore_training_state(ckpt: Path, dist: Dist, optimizer, scheduler) -> Position:
    state = torch.load(ckpt / TRAINER_STATE, map_location="cpu", weights_only=False)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if len(state["rng"]) != dist.world:
        raise InvalidValue(f"checkpoint has RNG states of {len(state['rng'])} processes, this run has {dist.world}")
    set_rng_state(state["rng"][dist.rank])
    return Position(state["step"], state["epoch"], state["step_in_epoch"])
