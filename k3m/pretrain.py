"""Pretrain K3M on a catalog build: ``python -m k3m.pretrain --config configs/tiny.yaml``.

Also ``k3m pretrain``; several processes with ``torchrun --nproc_per_node N -m k3m.pretrain``
(DistributedDataParallel; gloo on CPU, NCCL on CUDA). Run directory layout::

    RUN_DIR/tokenizer/                      the tokenizer (trained on the build, or copied)
    RUN_DIR/checkpoints/step_N/             model + tokenizer (K3MModel.save_pretrained),
                                            trainer_state.pt, train_config.yaml,
                                            property_order.json; written to a temp dir,
                                            then renamed
    RUN_DIR/checkpoints/latest              name of the newest complete checkpoint
    RUN_DIR/metrics.jsonl                   one JSON line per logged step and validation pass
    RUN_DIR/tensorboard/                    the same scalars as TensorBoard events

``--resume`` continues from ``latest`` exactly: model, optimizer, scheduler, every rank's RNG
state and the data position (epoch, step within the epoch) are restored, and the batches'
masks and negatives are keyed by (seed, epoch, item), so the loss curve after a resume is
the uninterrupted run's (bit for bit on CPU).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from k3m.train_config import TrainConfig

TASKS = ("mlm_title", "mlm_knowledge", "mom", "lpm")


# -- processes and devices -------------------------------------------------------------
@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()


def setup(cfg: TrainConfig) -> Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if cfg.device == "auto":
        device = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(cfg.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if device.type == "cpu":
        cores = len(os.sched_getaffinity(0)) // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
        torch.set_num_threads(cfg.threads or max(1, cores - cfg.num_workers))
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(rank, world, device)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# -- tokenizer, model, data ------------------------------------------------------------
def resolve_text_dir(model_cfg):
    """``model.text.pretrained_text_dir: minilm`` names the bundled all-MiniLM-L6-v2."""
    text_dir = model_cfg.text.pretrained_text_dir
    if text_dir is None:
        return model_cfg
    if text_dir == "minilm":
        from encoders.text import minilm_dir

        text_dir = minilm_dir()
    return model_cfg.with_pretrained_text(text_dir)


def training_texts(index, rows):
    """Train-split titles and knowledge texts: the tokenizer's training corpus."""
    from k3m.data import knowledge_text

    for row in rows:
        title = index.titles[row]
        if title:
            yield title
        pairs = index.pairs(int(row))
        if len(pairs):
            yield knowledge_text(index.pair_strings(pairs))[0]


def prepare_tokenizer(cfg: TrainConfig, model_cfg, index, train_rows, run_dir: Path, dist: Dist):
    """The run's tokenizer in ``run_dir/tokenizer`` (rank 0 makes it, the others read it)."""
    from encoders.text import load_tokenizer
    from encoders.text import train_wordpiece_tokenizer

    out = run_dir / "tokenizer"
    if dist.main and not (out / "tokenizer.json").is_file():
        if cfg.tokenizer == "train":  # deterministic, unlike tokenizers' own trainer
            train_wordpiece_tokenizer(training_texts(index, train_rows), cfg.vocab_size, out)
        else:
            if model_cfg.text.pretrained_text_dir is None:
                raise ValueError("tokenizer: pretrained needs model.text.pretrained_text_dir (e.g. minilm)")
            load_tokenizer(model_cfg.text.pretrained_text_dir).save_pretrained(str(out))
    dist.barrier()
    return load_tokenizer(out)


def split_rows(build, split: str, limit):
    rows = build.item_indices(split)
    return rows if limit is None else rows[:limit]


def make_loaders(cfg: TrainConfig, model_cfg, index, tokenizer, train_rows, valid_rows, dist: Dist):
    from k3m.data import Corruption, EpochBatchSampler, K3MCollator, K3MDataset, make_loader

    common = dict(
        max_pairs=model_cfg.text.max_pairs,
        seed=cfg.seed,
        use_title=model_cfg.use_title,
        use_image=model_cfg.use_image,
        use_knowledge=model_cfg.use_knowledge,
        corruption=Corruption(knowledge_as_title_text=cfg.knowledge_as_title_text),
    )
    pin = dist.device.type == "cuda"
    train_set = K3MDataset(index, train_rows, pair_order=cfg.pair_order, **common)
    sampler = EpochBatchSampler(
        train_set, cfg.batch_size, shuffle=True, drop_last=True, seed=cfg.seed,
        num_replicas=dist.world, rank=dist.rank, multiple_of=cfg.grad_accum,
    )
    collate = K3MCollator(train_set, tokenizer, model_cfg, targets=True, fixed_length=cfg.compile)
    if sampler.batches_per_epoch() == 0:
        raise ValueError(f"{len(train_rows)} train items give no full step of {cfg.batch_size} x {cfg.grad_accum} per process")
    train = make_loader(train_set, collate, sampler, cfg.num_workers, pin_memory=pin)
    # validation: fixed masks (epoch 0), in order, in the main process
    valid_set = K3MDataset(index, valid_rows, pair_order="fixed", **common)
    valid_sampler = EpochBatchSampler(
        valid_set, cfg.batch_size, shuffle=False, drop_last=False, num_replicas=dist.world, rank=dist.rank
    )
    valid = make_loader(valid_set, K3MCollator(valid_set, tokenizer, model_cfg, targets=True), valid_sampler, 0, pin)
    return train, sampler, valid


def make_optimizer(cfg: TrainConfig, model, total_steps: int, device):
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]  # biases, norms
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr, betas=cfg.betas, fused=device.type == "cuda",
    )
    warmup = max(1, round(cfg.warmup_fraction * total_steps))

    def schedule(step: int) -> float:  # linear warmup, then linear decay to 0
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


# -- checkpoints -----------------------------------------------------------------------
def find_checkpoint(path: str | Path) -> Path:
    """A checkpoint dir, or a run dir / checkpoints dir → its ``latest`` checkpoint."""
    path = Path(path)
    for candidate in (path, path / "checkpoints"):
        if (candidate / "latest").is_file():
            return candidate / (candidate / "latest").read_text().strip()
    if (path / "trainer_state.pt").is_file():
        return path
    raise FileNotFoundError(f"{path}: no checkpoint (expected checkpoints/latest or trainer_state.pt)")


PROPERTY_ORDER = "property_order.json"


def save_checkpoint(
    run_dir: Path, step: int, model, tokenizer, trainer_state: dict, cfg: TrainConfig, keep: int, property_order: list[str]
) -> Path:
    ckpt_dir = run_dir / "checkpoints"
    final, tmp = ckpt_dir / f"step_{step}", ckpt_dir / f".step_{step}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, tokenizer)
    torch.save(trainer_state, tmp / "trainer_state.pt")
    cfg.save(tmp / "train_config.yaml")
    # the pair order the model learned with; embedding another build follows it (CatalogIndex)
    (tmp / PROPERTY_ORDER).write_text(json.dumps(property_order, ensure_ascii=False) + "\n")
    shutil.rmtree(final, ignore_errors=True)  # a leftover of a run resumed from before it
    os.replace(tmp, final)
    pointer = ckpt_dir / ".latest.tmp"
    pointer.write_text(final.name + "\n")
    os.replace(pointer, ckpt_dir / "latest")
    steps = sorted(int(p.name[5:]) for p in ckpt_dir.glob("step_*") if p.name[5:].isdigit())
    for old in steps[:-keep] if keep > 0 else []:
        shutil.rmtree(ckpt_dir / f"step_{old}", ignore_errors=True)
    return final


def load_pretrained(path: str | Path):
    """(model, tokenizer, train config) of a checkpoint or run dir, for embedding/evaluation."""
    from encoders.text import load_tokenizer
    from k3m.model import K3MModel

    ckpt = find_checkpoint(path)
    return K3MModel.from_pretrained(ckpt), load_tokenizer(ckpt), TrainConfig.load(ckpt / "train_config.yaml")


def load_property_order(path: str | Path) -> list[str] | None:
    """The property order a checkpoint (or run dir) was trained with; None for checkpoints
    written before it was saved, which then follow the embedded build's own order."""
    file = find_checkpoint(path) / PROPERTY_ORDER
    return json.loads(file.read_text()) if file.is_file() else None


# -- metrics ---------------------------------------------------------------------------
class Metrics:
    """metrics.jsonl + TensorBoard, rank 0 only."""

    def __init__(self, run_dir: Path, enabled: bool, resume_step: int | None):
        self.enabled = enabled
        if not enabled:
            return
        from torch.utils.tensorboard import SummaryWriter

        self.path = run_dir / "metrics.jsonl"
        if resume_step is not None and self.path.is_file():  # drop lines past the checkpoint
            lines = [l for l in self.path.read_text().splitlines() if l and json.loads(l)["step"] <= resume_step]
            self.path.write_text("".join(l + "\n" for l in lines))
        elif resume_step is None:
            self.path.unlink(missing_ok=True)
        self.file = self.path.open("a")
        self.tb = SummaryWriter(str(run_dir / "tensorboard"), purge_step=resume_step + 1 if resume_step is not None else None)

    def log(self, record: dict, prefix: str) -> None:
        if not self.enabled:
            return
        self.file.write(json.dumps({"split": prefix, **record}) + "\n")
        self.file.flush()
        for key, value in record.items():
            if key != "step" and isinstance(value, (int, float)):
                self.tb.add_scalar(f"{prefix}/{key}", value, record["step"])

    def close(self) -> None:
        if self.enabled:
            self.file.close()
            self.tb.close()


def mean_over_ranks(values: torch.Tensor, dist: Dist) -> torch.Tensor:
    if dist.world > 1:
        torch.distributed.all_reduce(values)
        values /= dist.world
    return values


@torch.no_grad()
def evaluate(model, loader, dist: Dist, autocast) -> dict:
    """Item-weighted mean of each loss over the validation items (all ranks). Runs on the
    unwrapped model under a forked RNG, so validation never shifts the training RNG."""
    model.eval()
    keys = ("loss",) + TASKS
    sums = torch.zeros(2 * len(keys), dtype=torch.float64, device=dist.device)  # sum, items
    loader.batch_sampler.set_epoch(0)
    with torch.random.fork_rng(devices=[dist.device] if dist.device.type == "cuda" else []):
        for batch in loader:
            batch = batch.to(dist.device, non_blocking=True)
            with autocast:
                losses = model(batch).losses
            for i, key in enumerate(keys):
                if key in losses and torch.isfinite(losses[key]):
                    sums[i] += losses[key].double() * batch.batch_size
                    sums[len(keys) + i] += batch.batch_size
    if dist.world > 1:
        torch.distributed.all_reduce(sums)
    model.train()
    totals, counts = sums[: len(keys)].tolist(), sums[len(keys) :].tolist()
    return {k: t / n for k, t, n in zip(keys, totals, counts) if n}


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


# -- the loop --------------------------------------------------------------------------
def train(cfg: TrainConfig, resume: str | Path | None = None) -> dict:
    """Pretrain; returns a summary (steps, last losses, validation, items/s, memory)."""
    from etl.catalog_build import CatalogBuild
    from k3m.data import CatalogIndex
    from k3m.model import K3MModel

    wall_start = time.perf_counter()
    dist = setup(cfg)
    run_dir = Path(cfg.run_dir)
    ckpt = find_checkpoint(resume) if resume is not None else None
    seed_everything(cfg.seed + dist.rank)
    if dist.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        cfg.save(run_dir / "train_config.yaml")
    dist.barrier()

    build = CatalogBuild.open(cfg.build)
    index = CatalogIndex.from_build(build, property_order=load_property_order(ckpt) if ckpt is not None else None)
    train_rows, valid_rows = split_rows(build, "train", cfg.train_items), split_rows(build, "valid", cfg.valid_items)
    if ckpt is not None:
        from encoders.text import load_tokenizer

        tokenizer = load_tokenizer(ckpt)
        model = K3MModel.from_pretrained(ckpt)
        model_cfg = model.config
    else:
        model_cfg = resolve_text_dir(cfg.model_config())
        tokenizer = prepare_tokenizer(cfg, model_cfg, index, train_rows, run_dir, dist)
        model_cfg = model_cfg.with_tokenizer(tokenizer)
        model = K3MModel(model_cfg)
    if model_cfg.use_image and model_cfg.image.kind != "region" and build.images.shape[1] != model_cfg.image.image_size:
        raise ValueError(
            f"{cfg.build} stores {build.images.shape[1]} px images, the model reads {model_cfg.image.image_size} px: "
            f"re-import with --image-size {model_cfg.image.image_size} or --set model.image.image_size={build.images.shape[1]}"
        )
    model.to(dist.device)
    train_loader, sampler, valid_loader = make_loaders(cfg, model_cfg, index, tokenizer, train_rows, valid_rows, dist)

    steps_per_epoch = sampler.batches_per_epoch() // cfg.grad_accum
    total_steps = cfg.max_steps or cfg.epochs * steps_per_epoch
    optimizer, scheduler = make_optimizer(cfg, model, total_steps, dist.device)
    step = epoch = step_in_epoch = 0
    if ckpt is not None:
        state = torch.load(ckpt / "trainer_state.pt", map_location="cpu", weights_only=False)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, epoch, step_in_epoch = state["step"], state["epoch"], state["step_in_epoch"]
        if len(state["rng"]) != dist.world:
            raise ValueError(f"checkpoint has RNG states of {len(state['rng'])} processes, this run has {dist.world}")
        set_rng_state(state["rng"][dist.rank])

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
    metrics = Metrics(run_dir, dist.main, step if ckpt is not None else None)
    items_per_step = cfg.batch_size * cfg.grad_accum * dist.world
    bar = None
    if dist.main and cfg.progress:
        from tqdm import tqdm

        bar = tqdm(total=total_steps, initial=step, unit="step", dynamic_ncols=True)

    keys = ("loss",) + TASKS
    window = torch.zeros(len(keys), dtype=torch.float64, device=dist.device)  # loss sums since last log
    window_steps, window_start, data_time = 0, time.perf_counter(), 0.0
    last, valid_losses, throughput = {}, {}, []
    model.train()
    while step < total_steps:
        sampler.set_epoch(epoch, start_batch=step_in_epoch * cfg.grad_accum)
        micro = 0
        fetch_start = time.perf_counter()
        for batch in train_loader:
            data_time += time.perf_counter() - fetch_start
            batch = batch.to(dist.device, non_blocking=True)
            sync = (micro + 1) % cfg.grad_accum == 0
            no_sync = model.no_sync() if dist.world > 1 and not sync else nullcontext()
            with no_sync:
                with autocast:
                    losses = model(batch).losses
                (losses["loss"] / cfg.grad_accum).backward()
            window += torch.stack([losses[k].detach().double() if k in losses else window.new_tensor(0.0) for k in keys]) / cfg.grad_accum
            micro += 1
            if not sync:
                fetch_start = time.perf_counter()
                continue
            grad_norm = torch.nn.utils.clip_grad_norm_(raw_model.parameters(), cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step, step_in_epoch, window_steps = step + 1, step_in_epoch + 1, window_steps + 1
            if step_in_epoch == steps_per_epoch:
                epoch, step_in_epoch = epoch + 1, 0

            if step % cfg.log_every == 0 or step == total_steps:
                values = (mean_over_ranks(window.clone(), dist) / window_steps).tolist()
                elapsed = time.perf_counter() - window_start
                last = {k: v for k, v in zip(keys, values) if k == "loss" or k in losses}
                speed = items_per_step * window_steps / elapsed
                throughput.append(speed)
                record = {"step": step, "epoch": epoch, "lr": scheduler.get_last_lr()[0], **last,
                          "grad_norm": float(grad_norm), "items_per_s": speed, "data_wait_frac": data_time / elapsed}
                metrics.log(record, "train")
                if bar is not None:
                    bar.set_postfix({k: f"{v:.3f}" for k, v in last.items()} | {"items/s": f"{speed:.0f}"}, refresh=False)
                window.zero_()
                window_steps, window_start, data_time = 0, time.perf_counter(), 0.0
            paused = time.perf_counter()  # validation and checkpoints do not count as training time
            if (cfg.eval_every and step % cfg.eval_every == 0) or step == total_steps:
                valid_losses = evaluate(raw_model, valid_loader, dist, autocast)
                metrics.log({"step": step, **valid_losses}, "valid")
            if step % cfg.checkpoint_every == 0 or step == total_steps:
                states = [None] * dist.world
                if dist.world > 1:
                    torch.distributed.all_gather_object(states, rng_state())
                else:
                    states = [rng_state()]
                if dist.main:
                    trainer_state = {"step": step, "epoch": epoch, "step_in_epoch": step_in_epoch, "rng": states,
                                     "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}
                    save_checkpoint(run_dir, step, raw_model, tokenizer, trainer_state, cfg, cfg.keep_checkpoints,
                                    index.property_order)
                dist.barrier()
            window_start += time.perf_counter() - paused
            if bar is not None:
                bar.update(1)
            if step >= total_steps or step_in_epoch == 0:
                break  # done, or epoch over (the sampler's epoch changes)
            fetch_start = time.perf_counter()

    if bar is not None:
        bar.close()
    metrics.close()
    summary = {
        "steps": step,
        "epochs": step / steps_per_epoch,
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


# -- command line ----------------------------------------------------------------------
def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="YAML", help="training config (configs/tiny.yaml); with --resume, "
                   "defaults to the checkpoint's own")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (YAML value); dotted keys reach into the model: "
                   "--set model.text.num_layers=4")
    p.add_argument("--resume", nargs="?", const="", default=None, metavar="PATH",
                   help="continue exactly from the latest checkpoint of the run dir (or of PATH)")
    p.add_argument("--stats", action="store_true",
                   help="print how many train pairs the max_pairs / max_knowledge_tokens caps drop, and exit")
    p.set_defaults(func=run)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("pretrain", help="pretrain K3M on a catalog build",
                              description="Pretrain K3M (MLM title, MLM knowledge, MOM, LPM) on a catalog build. See docs/pretrain.md.")
    configure(p)


def load_config(args) -> tuple[TrainConfig, str | None]:
    resume = None
    if args.resume is not None:
        base = TrainConfig.load(args.config, args.overrides) if args.config else None
        resume = args.resume or (base.run_dir if base else None)
        if not resume:
            raise ValueError("--resume needs a PATH or a --config naming the run_dir")
        if base is None:  # the checkpoint's own config, writing on in the checkpoint's run dir
            ckpt = find_checkpoint(resume)
            overrides = [f"run_dir={ckpt.parent.parent}"] + args.overrides
            base = TrainConfig.load(ckpt / "train_config.yaml", overrides)
        return base, resume
    if not args.config:
        raise ValueError("--config is required (e.g. configs/tiny.yaml)")
    return TrainConfig.load(args.config, args.overrides), None


def stats(cfg: TrainConfig) -> dict:
    import tempfile

    from etl.catalog_build import CatalogBuild
    from k3m.data import CatalogIndex, cap_report

    build = CatalogBuild.open(cfg.build)
    model_cfg = resolve_text_dir(cfg.model_config())
    with tempfile.TemporaryDirectory() as tmp:
        index = CatalogIndex.from_build(build)
        tokenizer = prepare_tokenizer(cfg, model_cfg, index, split_rows(build, "train", cfg.train_items), Path(tmp), Dist())
        return cap_report(build, tokenizer, model_cfg.text.max_pairs, model_cfg.text.max_knowledge_tokens)


def run(args) -> int:
    try:
        cfg, resume = load_config(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"k3m pretrain: error: {exc}", file=sys.stderr)
        return 2
    if args.stats:
        print(json.dumps(stats(cfg), indent=2))
        return 0
    summary = train(cfg, resume)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(summary, indent=2))
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m k3m.pretrain", description=__doc__.splitlines()[0])
    configure(parser)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
