"""What a run needs before its first step: the tokenizer, the model config, the data
loaders and the optimizer with its schedule."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from encoders.text import load_tokenizer, minilm_dir, train_wordpiece_tokenizer
from etl.errors import InvalidValue
from k3m.data import Corruption, EpochBatchSampler, K3MDataset, make_collator, make_loader, tokenizer_corpus
from k3m.training.distributed import Dist


def resolve_text_dir(model_cfg):
    """``model.text.pretrained_text_dir: minilm`` names the bundled all-MiniLM-L6-v2."""
    text_dir = model_cfg.text.pretrained_text_dir
    if text_dir is None:
        return model_cfg
    if text_dir == "minilm":
        text_dir = minilm_dir()
    return model_cfg.with_pretrained_text(text_dir)


def resolve_feature_resolution(model_cfg, build, dist: Dist | None = None, run_dir: Path | None = None):
    """A frozen-encoder config whose ``image.image_size`` is 0 with the resolution chosen for
    ``build`` on this machine (encoders.resolution); decided once, on rank 0, and sent to
    the others, so every rank reads the same features. Other configs come back unchanged."""
    if not (model_cfg.frozen and model_cfg.use_image and model_cfg.image.image_size == 0):
        return model_cfg
    from dataclasses import replace

    from encoders.resolution import resolution_for_build

    device = dist.device.type if dist is not None else ("cuda" if torch.cuda.is_available() else "cpu")
    choice = None
    if dist is None or dist.main:
        choice = resolution_for_build(build, model_cfg.image.feature_budget_minutes, device, model_cfg.image.efficientnet)
        if run_dir is not None:
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "feature_resolution.json").write_text(json.dumps(choice.as_dict(), indent=2) + "\n")
    size = choice.size if choice is not None else 0
    if dist is not None and dist.world > 1:
        shared = [size]
        torch.distributed.broadcast_object_list(shared, src=0)
        size = shared[0]
    return replace(model_cfg, image=replace(model_cfg.image, image_size=size))


def prepare_tokenizer(cfg, model_cfg, index, train_rows, run_dir: Path, dist: Dist):
    """The run's tokenizer in ``run_dir/tokenizer`` (rank 0 makes it, the others read it)."""
    out = run_dir / "tokenizer"
    if dist.main and not (out / "tokenizer.json").is_file():
        if cfg.tokenizer == "train":  # deterministic, unlike tokenizers' own trainer
            train_wordpiece_tokenizer(tokenizer_corpus(index, train_rows), cfg.vocab_size, out)
        else:
            if model_cfg.text.pretrained_text_dir is None:
                raise InvalidValue("tokenizer: pretrained needs model.text.pretrained_text_dir (e.g. minilm)")
            load_tokenizer(model_cfg.text.pretrained_text_dir).save_pretrained(str(out))
    dist.barrier()
    return load_tokenizer(out)


def split_rows(build, split: str, limit):
    """Build rows of ``split`` (the first ``limit``), read from the split column alone (not
    the build's frame of every column)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    if split not in ("train", "valid", "test"):
        raise ValueError(f"split must be train, valid or test, got {split!r}")
    column = pq.ParquetFile(build.path / "items.parquet").read(columns=["split"]).column("split")
    rows = np.flatnonzero(pc.fill_null(pc.equal(column, split), False).to_numpy(zero_copy_only=False))
    return rows if limit is None else rows[:limit]


def make_loaders(cfg, model_cfg, index, tokenizer, train_rows, valid_rows, dist: Dist):
    """(train loader, its sampler, validation loader)."""
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
    collate = make_collator(train_set, tokenizer, model_cfg, targets=True, fixed_length=cfg.compile)
    if sampler.batches_per_epoch() == 0:
        raise InvalidValue(f"{len(train_rows)} train items give no full step of {cfg.batch_size} x {cfg.grad_accum} per process")
    train = make_loader(train_set, collate, sampler, cfg.num_workers, pin_memory=pin)
    # validation: fixed masks (epoch 0), in order, in the main process
    valid_set = K3MDataset(index, valid_rows, pair_order="fixed", **common)
    valid_sampler = EpochBatchSampler(
        valid_set, cfg.batch_size, shuffle=False, drop_last=False, num_replicas=dist.world, rank=dist.rank
    )
    valid = make_loader(valid_set, make_collator(valid_set, tokenizer, model_cfg, targets=True), valid_sampler, 0, pin)
    return train, sampler, valid


def make_optimizer(cfg, model, total_steps: int, device):
    """AdamW (no decay on biases and norms), linear warmup then linear decay to 0."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr, betas=cfg.betas, fused=device.type == "cuda",
    )
    warmup = max(1, round(cfg.warmup_fraction * total_steps))

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
