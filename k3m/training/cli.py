"""``python -m k3m.pretrain`` / ``k3m pretrain``: pretrain K3M on a catalog build.

    python -m k3m.pretrain --set build=BUILD [--set key=value ...]   (the CPU default run)
    python -m k3m.pretrain --config configs/pretrain_tiny.yaml [--set key=value ...]
    python -m k3m.pretrain --resume RUN_DIR
    torchrun --nproc_per_node N -m k3m.pretrain --config configs/pretrain_gpu.yaml ...   (DistributedDataParallel)
    python -m k3m.pretrain --config configs/pretrain_cpu.yaml --stats      (what the knowledge caps drop)
    python -m k3m.pretrain --config configs/pretrain_cpu.yaml --features   (fill the feature cache, then stop)
    k3m pretrain --config configs/pretrain_cpu.yaml --features --engine ray [--address HOST:PORT]   (on Ray Data)

See docs/pretrain.md for the run directory layout.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import torch

from encoders.cache import ENGINES, FeatureCache
from etl.catalog_build import CatalogBuild
from etl.errors import InvalidValue
from k3m.data import CatalogIndex, cap_report
from k3m.data.index import FEATURES_DIR_ENV, feature_spec
from k3m.model.run import ResolvedRun
from k3m.training.checkpointing import TRAIN_CONFIG
from k3m.training.config import TrainConfig
from k3m.training.distributed import Dist
from k3m.training.loop import train
from k3m.training.prepare import prepare_tokenizer, resolve_feature_resolution, resolve_text_dir, split_rows

DESCRIPTION = "Pretrain K3M (MLM title, MLM knowledge, MOM, LPM) on a catalog build. See docs/pretrain.md."


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="YAML", help="training config (configs/pretrain_*.yaml; default: "
                   "TrainConfig's defaults, the CPU default run); with --resume, defaults to the checkpoint's own")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (YAML value); dotted keys reach into the model: "
                   "--set model.text.num_layers=4")
    p.add_argument("--resume", nargs="?", const="", default=None, metavar="PATH",
                   help="continue exactly from the latest checkpoint of the run dir (or of PATH)")
    p.add_argument("--stats", action="store_true",
                   help="print how many train pairs the max_pairs / max_knowledge_tokens caps drop, and exit")
    p.add_argument("--features", action="store_true",
                   help="frozen encoders: check the feature cache's tables for the build, compute what they lack "
                   "(and any damaged rows), and exit")
    p.add_argument("--engine", choices=ENGINES, default=None,
                   help="with --features: compute in this process (local, the default) or with Ray Data (ray; "
                   "docs/scale.md)")
    p.add_argument("--address", default=None, metavar="HOST:PORT",
                   help="with --engine ray: the Ray cluster (default $RAY_ADDRESS, else a local Ray)")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="with --engine ray: encoder actors of a local Ray (default 2; a cluster's GPUs set it there)")
    p.set_defaults(func=run)


def add_parser(subparsers) -> None:
    configure(subparsers.add_parser("pretrain", help="pretrain K3M on a catalog build", description=DESCRIPTION))


def load_config(args) -> tuple[TrainConfig, "str | ResolvedRun | None"]:
    if args.resume is None:
        return TrainConfig.load(args.config or None, args.overrides), None
    base = TrainConfig.load(args.config, args.overrides) if args.config else None
    resume = args.resume or (base.run_dir if base else None)
    if not resume:
        raise InvalidValue("--resume needs a PATH or a --config naming the run_dir")
    if base is None:  # the checkpoint's own config, writing on in the checkpoint's run dir
        run = ResolvedRun.resolve(resume)  # once: train() continues from this very checkpoint
        base = TrainConfig.load(run.path / TRAIN_CONFIG, [f"run_dir={run.path.parent.parent}"] + args.overrides)
        return base, run
    return base, resume


def stats(cfg: TrainConfig) -> dict:
    build = CatalogBuild.open(cfg.build)
    model_cfg = resolve_text_dir(cfg.model)
    with tempfile.TemporaryDirectory() as tmp:
        index = CatalogIndex.from_build(build)
        tokenizer = prepare_tokenizer(cfg, model_cfg, index, split_rows(build, "train", cfg.train_items), Path(tmp), Dist())
        return cap_report(build, tokenizer, model_cfg.text.max_pairs, model_cfg.text.max_knowledge_tokens)


def check_engine_options(args) -> None:
    if not args.features and (args.engine or args.address or args.workers is not None):
        raise InvalidValue("--engine, --address and --workers go with --features")
    if args.address and args.engine != "ray":
        raise InvalidValue("--address needs --engine ray")
    if args.workers is not None and args.workers < 1:
        raise InvalidValue("--workers must be at least 1")


def run(args) -> int:
    check_engine_options(args)
    cfg, resume = load_config(args)
    if args.stats:
        print(json.dumps(stats(cfg), indent=2))
        return 0
    if args.features:
        model_cfg = resolve_text_dir(cfg.model)
        if not model_cfg.frozen:
            raise InvalidValue(f"--features: the model of {args.config} has trainable encoders (no feature cache)")
        build = CatalogBuild.open(cfg.build)
        model_cfg = resolve_feature_resolution(model_cfg, build)  # the resolution pretraining will read
        cache = FeatureCache(feature_spec(model_cfg), os.environ.get(FEATURES_DIR_ENV))
        features = cache.for_build(build, verify="full", engine=args.engine or "local",
                                   address=args.address, workers=args.workers)
        print(f"features of {cfg.build}: {features.path}")
        return 0
    summary = train(cfg, resume)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(summary, indent=2))
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return 0
