"""Which part of an item representation carries the category? A diagnostic beside the grid.

Runs the evaluation's own linear probe (same pools, probe settings and seed as
``k3m evaluate``) on clean inputs, once per representation the model computes: c* (what the
grid evaluates), c (the presence-mean of the modality vectors, before structure
aggregation), each pooled modality alone, and the pooled modalities concatenated.

    python scripts/probe_representations.py --config configs/evaluate_fashion44k.yaml \\
        --build BUILD --run-root runs/evaluate/fashion44k k3m no_kg title_only

Prints a Markdown table (accuracy and macro-F1, percent).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from etl.catalog_build import CatalogBuild
from k3m.data import index_for
from k3m.embedding.encoder import ItemEncoder
from k3m.evaluation.config import EvaluationConfig
from k3m.evaluation.models import MODELS, load_model
from k3m.evaluation.pools import make_pools
from k3m.evaluation.probe import gather, measure_probe, train_probe
from k3m.evaluation.tasks.classification import ClassificationTask
from k3m.model.checkpoint import load_property_order


@torch.no_grad()
def representations(model, encoder: ItemEncoder, rows: np.ndarray) -> dict[str, torch.Tensor]:
    parts: dict[str, list[torch.Tensor]] = {}
    for batch in encoder.batches(rows):
        out = model(batch, compute_losses=False)
        got = {"c* (evaluated)": out.item_repr, "c (modality mean)": out.item_center}
        got.update({f"{name} alone": vector for name, vector in out.pooled.items()})
        if len(out.pooled) > 1:
            got["modalities concatenated"] = torch.cat([out.pooled[name] for name in sorted(out.pooled)], 1)
        for key, vector in got.items():
            parts.setdefault(key, []).append(vector.float().cpu())
    return {key: torch.cat(vectors) for key, vectors in parts.items()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="the evaluation config (pools, probe, seed)")
    parser.add_argument("--build", help="overrides the config's build")
    parser.add_argument("--run-root", type=Path, help="pretraining runs, one per model (default: the config's run_root)")
    parser.add_argument("models", nargs="+", choices=sorted(MODELS))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    cfg = EvaluationConfig.load(args.config, [f"build={args.build}"] if args.build else [])
    build = CatalogBuild.open(cfg.build)
    pools = make_pools(build, cfg.pools.finetune_items, cfg.pools.test_items, cfg.seed)
    task = ClassificationTask()
    task.prepare(build, pools, cfg.seed)
    train_rows, test_rows = np.unique(task.train.rows.ravel()), np.unique(task.test.rows.ravel())
    rows = []
    for name in args.models:
        run_dir = (args.run_root or Path(cfg.pretrain.run_root)) / name
        model, tokenizer = load_model(MODELS[name], run_dir)
        index = index_for(build, model.config, property_order=load_property_order(run_dir), progress=False)
        encoder = ItemEncoder(model, tokenizer, index, MODELS[name].knowledge_as_title_text, cfg.encode_batch_size, cfg.seed)
        train, test = representations(model, encoder, train_rows), representations(model, encoder, test_rows)
        for key in train:
            probe = train_probe(task, gather(train[key], train_rows, task.train), train[key], cfg.probe, cfg.seed)
            metrics = measure_probe(task, probe, gather(test[key], test_rows, task.test))
            rows.append(f"| {MODELS[name].label} | {key} | {train[key].shape[1]} | "
                        f"{100 * metrics['accuracy']:.1f} | {100 * metrics['macro_f1']:.1f} |")
    print("| model | representation | dim | accuracy | macro-F1 |\n|---|---|---|---|---|\n" + "\n".join(rows))


if __name__ == "__main__":
    main()
