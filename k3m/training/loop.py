"""The pretraining loop: ``train(cfg)``, readable in one sitting.

Each optimizer step runs ``train_step`` over ``grad_accum`` micro-batches; every
``log_every`` steps the mean losses go to metrics.jsonl/TensorBoard, every ``eval_every``
steps the validation losses, every ``checkpoint_every`` steps a checkpoint (and all three at
the last step). ``resume`` continues exactly: model, optimizer, scheduler, every rank's RNG
state and the data position come back, and the batches' masks and negatives are keyed by
(seed, epoch, item), so the loss curve after a resume is the uninterrupted run's.
"""
from __future__ import annotations

import json
import math
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from etl.catalog_build import CatalogBuild
from etl.errors import InvalidValue, UserError
from k3m.data import index_for
from k3m.model import K3MModel
from k3m.model.configuration import LossConfig
from k3m.model.heads.task_weighting import OPTIONAL_TASKS, task_names
from k3m.model.run import ResolvedRun
from k3m.training.checkpointing import Position, restore_training_state, save_training_checkpoint
from k3m.training.config import TrainConfig
from k3m.training.distributed import Dist, mean_over_ranks, seed_everything, setup
from k3m.training.kept_statistics import fit_kept_features
from k3m.training.prepare import (make_loaders, make_optimizer, prepare_tokenizer, resolve_feature_resolution,
                                  resolve_text_dir, split_rows)
from k3m.training.tracking import Metrics, Progress, peak_memory_mb

TASKS = task_names(LossConfig(**dict.fromkeys(OPTIONAL_TASKS, 1.0)))  # every task a loss line may carry
KEYS = ("loss",) + TASKS


class NonFiniteLoss(UserError):
    """A step whose loss or gradient is NaN or inf: it is not applied, training stops."""

    def __init__(self, values: dict):
        self.values, self.step = values, None
        super().__init__()

    def __str__(self) -> str:
        shown = ", ".join(f"{k} {v:.4g}" for k, v in self.values.items())
        return (f"training stopped at step {self.step}: the loss is not finite ({shown}); the step was not applied "
                f"and no checkpoint was written from it. Look for NaN or inf in the inputs (a corrupt feature cache, "
                f"a corrupt checkpoint to resume from) or lower lr")


def train_step(model, micro_batches, optimizer, scheduler, cfg, dist: Dist, autocast, clip_params) -> tuple[torch.Tensor, float, set]:
    """One optimizer step over ``micro_batches``: forward/backward each (DDP syncs gradients
    on the last only), clip, step. Returns (mean losses over the micro-batches in KEYS
    order, gradient norm, the tasks present)."""
    sums = torch.zeros(len(KEYS), dtype=torch.float64, device=dist.device)
    present: set = set()
    for i, batch in enumerate(micro_batches):
        last = i == len(micro_batches) - 1
        with model.no_sync() if dist.world > 1 and not last else nullcontext():
            with autocast:
                losses = model(batch).losses
            (losses["loss"] / len(micro_batches)).backward()
        sums += torch.stack([losses[k].detach().double() if k in losses else sums.new_tensor(0.0) for k in KEYS]) / len(micro_batches)
        present |= set(losses)
    grad_norm = torch.nn.utils.clip_grad_norm_(clip_params, cfg.max_grad_norm)
    checked = torch.cat([sums, grad_norm.detach().double().reshape(1)]).tolist()  # the step's one host sync
    if not all(math.isfinite(v) for v in checked):  # NaN weights must never be stepped into, or saved
        optimizer.zero_grad(set_to_none=True)
        raise NonFiniteLoss({k: v for k, v in zip(KEYS + ("grad_norm",), checked) if k in present or k in ("loss", "grad_norm")})
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return sums, checked[-1], present


@torch.no_grad()
def validate(model, loader, dist: Dist, autocast) -> dict:
    """Item-weighted mean of each loss over the validation items (all ranks). Runs on the
    unwrapped model under a forked RNG, so validation never shifts the training RNG."""
    model.eval()
    sums = torch.zeros(2 * len(KEYS), dtype=torch.float64, device=dist.device)  # sum, items
    loader.batch_sampler.set_epoch(0)
    with torch.random.fork_rng(devices=[dist.device] if dist.device.type == "cuda" else []):
        for batch in loader:
            batch = batch.to(dist.device, non_blocking=True)
            with autocast:
                losses = model(batch).losses
            for i, key in enumerate(KEYS):
                if key in losses and torch.isfinite(losses[key]):
                    sums[i] += losses[key].double() * batch.batch_size
                    sums[len(KEYS) + i] += batch.batch_size
    if dist.world > 1:
        torch.distributed.all_reduce(sums)
    model.train()
    totals, counts = sums[: len(KEYS)].tolist(), sums[len(KEYS) :].tolist()
    return {k: t / n for k, t, n in zip(KEYS, totals, counts) if n}


def check_distrust(model, valid_losses: dict) -> "str | None":
    """``keep.distrust`` fills a kept block from c* where the consistency head judges the
    shown title or photo another item's. A head that memorised the train items judges new
    items' own titles another's (k3m-sample, 411 train items: validation loss 1.02 against 0.05
    in training, 71% of own test titles distrusted), so the saved model stops distrusting when
    the head's validation loss is above ``keep.distrust_max_valid_loss``. Returns what was
    done, None when nothing changed."""
    keep, loss = model.config.keep, valid_losses.get("consistency")
    if not keep.distrust or loss is None or loss <= keep.distrust_max_valid_loss:
        return None
    keep.distrust = False
    return (f"keep.distrust switched off: the consistency head's validation loss {loss:.3f} is above "
            f"keep.distrust_max_valid_loss {keep.distrust_max_valid_loss} (it does not judge new items: too few train "
            f"items?); shown titles and photos are kept as they are")


def train(cfg: TrainConfig, resume: "str | Path | ResolvedRun | None" = None) -> dict:
    """Pretrain; returns a summary (steps, last losses, validation, items/s, memory).
    ``resume``: a run or checkpoint directory (its latest complete checkpoint), or a
    :class:`ResolvedRun` resolved by the caller."""
    wall_start = time.perf_counter()
    dist = setup(cfg)
    run_dir = Path(cfg.run_dir)
    ckpt = ResolvedRun.resolve(resume) if resume is not None else None
    seed_everything(cfg.seed + dist.rank)
    if dist.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        cfg.save(run_dir / "train_config.yaml")
    dist.barrier()

    # data and model
    build = CatalogBuild.open(cfg.build)
    train_rows, valid_rows = split_rows(build, "train", cfg.train_items), split_rows(build, "valid", cfg.valid_items)
    if ckpt is not None:
        tokenizer, model = ckpt.tokenizer, ckpt.load_model()
        index = index_for(build, model.config, property_order=ckpt.property_order)
    else:
        model_cfg = resolve_feature_resolution(resolve_text_dir(cfg.model), build, dist, run_dir)
        index = index_for(build, model_cfg)
        tokenizer = prepare_tokenizer(cfg, model_cfg, index, train_rows, run_dir, dist)
        model = K3MModel(model_cfg.with_tokenizer(tokenizer))
        fit_kept_features(model, index, train_rows, cfg.seed)  # the kept path's map, before the first step
    model_cfg = model.config
    model.to(dist.device)
    train_loader, sampler, valid_loader = make_loaders(cfg, model_cfg, index, tokenizer, train_rows, valid_rows, dist)

    # optimizer, schedule, position
    steps_per_epoch = sampler.batches_per_epoch() // cfg.grad_accum
    total_steps = cfg.max_steps or max(cfg.epochs * steps_per_epoch, cfg.min_steps)
    optimizer, scheduler = make_optimizer(cfg, model, total_steps, dist.device)
    pos = restore_training_state(ckpt.path, dist, optimizer, scheduler) if ckpt is not None else Position()
    raw_model = model
    if dist.world > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[dist.device.index] if dist.device.type == "cuda" else None,
            find_unused_parameters=cfg.ddp_find_unused_parameters,
        )
    if cfg.compile:
        model = torch.compile(model)
    bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and dist.device.type == "cuda")
    autocast = torch.autocast(dist.device.type, dtype=torch.bfloat16) if bf16 else nullcontext()
    metrics = Metrics(run_dir, dist.main, pos.step if ckpt is not None else None)
    progress = Progress(dist.main, cfg.progress, total_steps, pos.step)
    items_per_step = cfg.batch_size * cfg.grad_accum * dist.world

    window = torch.zeros(len(KEYS), dtype=torch.float64, device=dist.device)  # loss sums since the last log line
    window_steps, window_start, data_time = 0, time.perf_counter(), 0.0
    last, valid_losses, throughput = {}, {}, []
    model.train()
    while pos.step < total_steps:
        sampler.set_epoch(pos.epoch, start_batch=pos.step_in_epoch * cfg.grad_accum)
        batches = iter(train_loader)
        while pos.step < total_steps:
            fetch_start = time.perf_counter()
            micro = [next(batches).to(dist.device, non_blocking=True) for _ in range(cfg.grad_accum)]
            data_time += time.perf_counter() - fetch_start
            try:
                losses, grad_norm, present = train_step(model, micro, optimizer, scheduler, cfg, dist, autocast, raw_model.parameters())
            except NonFiniteLoss as exc:
                exc.step = pos.step + 1
                raise
            window += losses
            pos.step, pos.step_in_epoch, window_steps = pos.step + 1, pos.step_in_epoch + 1, window_steps + 1
            if pos.step_in_epoch == steps_per_epoch:
                pos.epoch, pos.step_in_epoch = pos.epoch + 1, 0

            shown = None
            if pos.step % cfg.log_every == 0 or pos.step == total_steps:
                values = (mean_over_ranks(window.clone(), dist) / window_steps).tolist()
                elapsed = time.perf_counter() - window_start
                last = {k: v for k, v in zip(KEYS, values) if k == "loss" or k in present}
                speed = items_per_step * window_steps / elapsed
                throughput.append(speed)
                metrics.log({"step": pos.step, "epoch": pos.epoch, "lr": scheduler.get_last_lr()[0], **last,
                             "grad_norm": grad_norm, "items_per_s": speed, "data_wait_frac": data_time / elapsed}, "train")
                shown = {**last, "items/s": speed}
                window.zero_()
                window_steps, window_start, data_time = 0, time.perf_counter(), 0.0
            paused = time.perf_counter()  # validation and checkpoints do not count as training time
            if (cfg.eval_every and pos.step % cfg.eval_every == 0) or pos.step == total_steps:
                valid_losses = validate(raw_model, valid_loader, dist, autocast)
                metrics.log({"step": pos.step, **valid_losses}, "valid")
                if pos.step == total_steps and (message := check_distrust(raw_model, valid_losses)) and dist.main:
                    print(f"[k3m pretrain] {message}", file=sys.stderr, flush=True)
            if pos.step % cfg.checkpoint_every == 0 or pos.step == total_steps:
                save_training_checkpoint(cfg, dist, pos, raw_model, tokenizer, optimizer, scheduler, index.property_order)
            window_start += time.perf_counter() - paused
            progress.update(pos.step, shown)
            if pos.step_in_epoch == 0:
                break  # the epoch is over: the sampler moves to the next one

    progress.close()
    metrics.close()
    summary = {
        "steps": pos.step,
        "epochs": pos.step / steps_per_epoch,
        "world_size": dist.world,
        "train": last,
        "valid": valid_losses,
        "items_per_s": float(np.median(throughput)) if throughput else None,
        "peak_memory_mb": peak_memory_mb(dist.device),
        "wall_seconds": time.perf_counter() - wall_start,  # this invocation only (a resumed run counts its own part)
        "run_dir": str(run_dir),
    }
    if dist.main:
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
