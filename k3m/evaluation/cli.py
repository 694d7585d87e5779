"""`k3m evaluate`: downstream tasks × missing/noise settings × ratios × models, resumable.

    k3m evaluate --config configs/evaluate_fashion44k.yaml
    k3m evaluate --config configs/evaluate_fashion44k.yaml --model k3m=runs/tiny --set pools.test_items=500
    k3m evaluate --out reports/fashion44k-full --report-only
    k3m evaluate --config configs/evaluate_fashion44k.yaml --pretrain-only   # beside a grid run
    k3m evaluate --config configs/evaluate_fashion44k.yaml --redo link_prediction

Writes OUT/results.jsonl (one line per finished cell; rerunning resumes), OUT/results.csv,
OUT/report.md and OUT/figures/*.png; see docs/evaluate.md.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from etl.errors import InvalidValue


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="YAML", help="evaluation grid (configs/evaluate_fashion44k.yaml)")
    p.add_argument("--build", help="catalog build directory (overrides the config's build)")
    p.add_argument("--out", help="output directory (overrides the config's out_dir)")
    p.add_argument("--model", dest="checkpoints", action="append", default=[], metavar="NAME=DIR",
                   help="use this checkpoint (or pretraining run dir) for model NAME instead of pretraining it")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (YAML value), dotted for sections: --set pools.test_items=500")
    p.add_argument("--report-only", action="store_true", help="rebuild report.md, results.csv and figures from OUT")
    p.add_argument("--redo", action="append", default=[], metavar="TASK",
                   help="drop this task's finished cells from OUT and compute them again (repeatable)")
    p.add_argument("--pretrain-only", action="store_true",
                   help="only pretrain the grid's models (safe to run beside the grid on a second core)")
    p.set_defaults(func=run)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate", help="evaluate models on downstream tasks under missing/noise corruption",
        description="Tasks (classification, alignment, attribute QA, link prediction) x corruption settings "
        "(TMR IMR MMR TNR INR TINR MNR) x ratios x models (K3M and baselines). See docs/evaluate.md.",
    )
    configure(p)


def load_config(args):
    from k3m.evaluation.config import EvaluationConfig

    overrides = list(args.overrides)
    if args.build:
        overrides.append(f"build={args.build}")
    if args.out:
        overrides.append(f"out_dir={args.out}")
    for item in args.checkpoints:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise InvalidValue(f"--model expects NAME=DIR, got {item!r}")
        overrides.append(f"checkpoints.{name}={path}")
    return EvaluationConfig.load(args.config, overrides)


def run(args) -> int:
    if args.report_only:
        from k3m.evaluation.report import write_report

        out = args.out or (load_config(args).out_dir if args.config else None)
        if not out:
            raise InvalidValue("--report-only needs --out or a --config naming out_dir")
        if not (Path(out) / "results.jsonl").is_file():
            raise FileNotFoundError(f"{out}: no results.jsonl to report on")
        print(write_report(out))
        return 0
    config = load_config(args)
    unknown = sorted(set(args.redo) - set(config.tasks))
    if unknown:
        raise InvalidValue(f"--redo {', '.join(unknown)}: not a task of this grid ({', '.join(config.tasks)})")
    from k3m.evaluation.runner import pretrain_all, run_evaluation

    if args.pretrain_only:
        for run_dir in pretrain_all(config):
            print(run_dir)
        return 0
    print(run_evaluation(config, args.redo) / "report.md")
    return 0
