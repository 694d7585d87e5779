"""Pretraining throughput, peak memory and where the time goes.

    python benchmarks/bench_pretrain.py --build data/builds/fashion44k             # cpu preset (frozen) on CPU
    python benchmarks/bench_pretrain.py --build ... --config configs/pretrain_tiny.yaml --batch-size 32   # tiny preset
    python benchmarks/bench_pretrain.py --build ... --config configs/pretrain_gpu.yaml --batch-size 64    # base preset, GPU

With the cpu preset the encoders are frozen and their features come from the feature cache
(computed first if missing; benchmarks/bench_features.py times that part). Target on a
2-core CPU: >= 500 items/s.

Three measurements, written with a description of the machine to
``benchmarks/results/pretrain_<device>_<preset>.json``:

1. ``train``: the real loop (``k3m.training.train``: DataLoader workers, AdamW, bf16 on
   CUDA) for ``--steps`` steps: items/s (median over logging windows, first one dropped)
   and peak memory (process max RSS on CPU, max allocated on CUDA).
2. ``data``: the collator alone in this process (items/s of one loader worker).
3. ``breakdown``: ``--profile-steps`` steps in this process with forward hooks timing the
   model's parts (text encoder, image encoder, co-attention + IIFM, structure aggregation,
   heads), plus backward and optimizer; FLOPs per item from torch's FlopCounterMode give
   the model FLOP utilisation (MFU) on GPUs whose peak is known.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections import defaultdict
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from machine import describe  # benchmarks/machine.py

REPO = Path(__file__).resolve().parents[1]
# dense bf16 peak FLOP/s by device name fragment
PEAK_BF16 = {"H100 SXM": 989.4e12, "H100 80GB HBM3": 989.4e12, "H100 PCIe": 756.0e12, "H100": 989.4e12,
             "H200": 989.4e12, "A100": 312.0e12, "L40S": 362.0e12}
GROUPS = {  # model part (dotted path) -> part of the model
    "stem.text_encoder": "encoders.text (title, knowledge, LPM strings)",
    "stem.image_encoder": "encoders.image",
    "stem.image_layers": "encoders.image",
    "core.image_to_item": "encoders.image",
    "core.co_attention": "interaction (co-attention)",
    "core.fusion": "interaction (IIFM)",
    "core.structure": "aggregation (structure GAT)",
    "heads.mlm": "heads (MLM, MOM)",
    "heads.mom": "heads (MLM, MOM)",
    "stem.title_in": "frozen features into the streams",
    "stem.knowledge_in": "frozen features into the streams",
}


def machine() -> dict:
    info = describe(("torch", "torch-geometric", "transformers", "tokenizers"))
    info["cores_available"] = len(os.sched_getaffinity(0))
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info |= {"gpu": props.name, "gpu_memory_gb": round(props.total_memory / 2**30, 1), "cuda": torch.version.cuda}
    return info


def peak_flops(name: str):
    return next((v for k, v in PEAK_BF16.items() if k in name), None)


def bench_train(args, run_dir: Path) -> dict:
    from k3m.training import train
    from k3m.training.config import TrainConfig

    overrides = [f"build={args.build}", f"run_dir={run_dir}", f"max_steps={args.steps}",
                 *([f"batch_size={args.batch_size}"] if args.batch_size else []), "log_every=5", "eval_every=0", f"checkpoint_every={args.steps}", "valid_items=64", "progress=false",
                 *([f"model.preset={args.preset}"] if args.preset else []), *args.set]
    if args.workers is not None:
        overrides.append(f"num_workers={args.workers}")
    cfg = TrainConfig.load(args.config, overrides)
    start = time.perf_counter()
    summary = train(cfg)
    lines = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
    speeds = [l["items_per_s"] for l in lines if l["split"] == "train"][1:]  # first window: warm-up
    waits = [l["data_wait_frac"] for l in lines if l["split"] == "train"][1:]
    return {"config": cfg.to_dict(), "seconds": time.perf_counter() - start, "steps": summary["steps"],
            "items_per_s": float(np.median(speeds)) if speeds else summary["items_per_s"],
            "data_wait_frac": float(np.median(waits)) if waits else None,
            "peak_memory_mb": summary["peak_memory_mb"], "final_losses": summary["train"]}, cfg


def timed_model(model, device):
    """Forward hooks adding each part's wall time into a dict (synchronising on CUDA)."""
    times: dict[str, float] = defaultdict(float)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def attach(module, group):
        def pre(*_):
            sync()
            module._bench_start = time.perf_counter()

        def post(*_):
            sync()
            times[group] += time.perf_counter() - module._bench_start

        module.register_forward_pre_hook(pre)
        module.register_forward_hook(post)

    for path, group in GROUPS.items():
        try:
            part = model.get_submodule(path)
        except AttributeError:  # not in this model (the other encoder mode, a switch)
            part = None
        if isinstance(part, (torch.nn.ModuleDict, torch.nn.ModuleList)):  # containers are never called
            for child in part.children():
                attach(child, group)
        elif part is not None:
            attach(part, group)
    return times


def bench_breakdown(args, cfg, run_dir: Path) -> dict:
    from torch.utils.flop_counter import FlopCounterMode

    from encoders.text import load_tokenizer
    from etl.catalog_build import CatalogBuild
    from k3m.data import index_for
    from k3m.model import K3MModel
    from k3m.training.prepare import resolve_feature_resolution, resolve_text_dir
    from k3m.training.distributed import Dist, setup
    from k3m.training.prepare import make_loaders, make_optimizer

    dist = setup(cfg)
    device = dist.device
    build = CatalogBuild.open(cfg.build)
    tokenizer = load_tokenizer(run_dir / "tokenizer")
    # the resolution the timed run read (image_size 0: chosen for the build, as pretraining does)
    model_cfg = resolve_feature_resolution(resolve_text_dir(cfg.model), build, dist).with_tokenizer(tokenizer)
    index = index_for(build, model_cfg, progress=False)
    model = K3MModel(model_cfg).to(device)
    optimizer, _ = make_optimizer(cfg, model, 1000, device)
    rows = build.item_indices("train")
    cfg.num_workers = 0  # collate in this process, timed
    train_loader, sampler, _ = make_loaders(cfg, model_cfg, index, tokenizer, rows, build.item_indices("valid")[:8], Dist(device=device))
    sampler.set_epoch(1)  # items the timed training run (epoch 0) did not fetch in this process
    collate, dataset = train_loader.collate_fn, train_loader.dataset
    batches = iter(sampler)
    bf16 = device.type == "cuda"
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    # data alone: a fresh collator over unseen items (title cache cold, as in a first epoch)
    start = time.perf_counter()
    n_data = 0
    for _ in range(args.data_batches):
        n_data += collate([dataset[key] for key in next(batches)]).batch_size
    data_rate = n_data / (time.perf_counter() - start)

    times = timed_model(model, device)
    totals: dict[str, float] = defaultdict(float)
    items = 0
    for step in range(args.profile_steps + 1):
        t0 = time.perf_counter()
        batch = collate([dataset[key] for key in next(batches)]).to(device)
        sync()
        t1 = time.perf_counter()
        with autocast:
            loss = model(batch).losses["loss"]
        sync()
        t2 = time.perf_counter()
        loss.backward()
        sync()
        t3 = time.perf_counter()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync()
        t4 = time.perf_counter()
        if step == 0:  # warm-up
            times.clear()
            continue
        items += batch.batch_size
        totals["data (collate, this process)"] += t1 - t0
        totals["forward"] += t2 - t1
        totals["backward"] += t3 - t2
        totals["optimizer"] += t4 - t3
    forward_parts = {k: v / items * 1e3 for k, v in times.items()}
    forward_parts["other (LPM loss, pooling, glue)"] = totals["forward"] / items * 1e3 - sum(forward_parts.values())

    with FlopCounterMode(display=False) as counter:
        with autocast:
            loss = model(batch).losses["loss"]
        loss.backward()
    optimizer.zero_grad(set_to_none=True)
    flops_per_item = counter.get_total_flops() / batch.batch_size
    return {
        "data_items_per_s_one_process": data_rate,
        "ms_per_item": {k: v / items * 1e3 for k, v in totals.items()},
        "forward_ms_per_item_by_part": forward_parts,
        "step_items_per_s_single_process": items / sum(totals.values()),
        "train_flops_per_item": flops_per_item,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", default="data/builds/fashion44k")
    parser.add_argument("--config", default=None,
                        help="training config (default: configs/pretrain_cpu.yaml on CPU, configs/pretrain_gpu.yaml on CUDA)")
    parser.add_argument("--preset", default=None, help="model preset (default: the config's)")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the config's")
    parser.add_argument("--steps", type=int, default=40, help="steps of the real training loop")
    parser.add_argument("--profile-steps", type=int, default=8)
    parser.add_argument("--data-batches", type=int, default=10)
    parser.add_argument("--workers", type=int, default=None, help="loader workers (default: the config's)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="more training-config overrides")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    args.config = args.config or str(REPO / "configs" / ("pretrain_gpu.yaml" if cuda else "pretrain_cpu.yaml"))
    from k3m.training.config import TrainConfig

    args.preset = args.preset or TrainConfig.load(args.config).model.preset
    if args.preset == "base" and not any(s.startswith("model.image") for s in args.set):
        args.set += ["model.image.image_size=64", "model.image.patch_size=8"]  # 64 px builds, 64 visual tokens
    info = machine()
    result = {"benchmark": "pretrain", "preset": args.preset, "build": str(args.build), "batch_size": args.batch_size,
              "machine": info}
    with tempfile.TemporaryDirectory() as tmp:
        result["train"], cfg = bench_train(args, Path(tmp))
        result["breakdown"] = bench_breakdown(args, cfg, Path(tmp))
    info["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    if cuda:
        peak = peak_flops(info["gpu"])
        achieved = result["breakdown"]["train_flops_per_item"] * result["train"]["items_per_s"]
        result["train"]["achieved_tflops"] = achieved / 1e12
        result["train"]["mfu"] = achieved / peak if peak else None
    out = Path(args.out or REPO / "benchmarks" / "results" / f"pretrain_{'cuda' if cuda else 'cpu'}_{args.preset}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("train", "breakdown")} | {"out": str(out)}, indent=2, default=str))


if __name__ == "__main__":
    main()
