"""The evaluation grid: tasks × corruption settings × ratios × models, resumable.

One entry point, :func:`evaluate`, over components chosen by name (tasks, settings, models
in :class:`~k3m.evaluation.config.EvaluationConfig`). For each model (pretrained here with
the shared budget, or user-supplied) and each condition (clean, then every setting at every
ratio > 0): the fine-tuning and test pools are corrupted by the condition's plan, encoded
once, and every task still missing from ``results.jsonl`` is run on those vectors (probe
mode) or by fine-tuning a fresh copy (fine-tune mode). Ratio 0 is one "clean" condition
shared by all settings. Link prediction runs on clean inputs, with PyKEEN's TransE beside
K3M. The report is rewritten at the end of every run.

A model that ignores a modality (``use_title=False`` / ``use_image=False``) gets the clean
vectors under a setting that only touches that modality: its inputs are identical, so
re-encoding would only burn CPU.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from etl.catalog_build import CatalogBuild
from etl.errors import InvalidValue, UserError
from k3m.data import CatalogIndex, index_for
from k3m.evaluation.baselines import BASELINES, BaselineEncoder
from k3m.evaluation.config import EvaluationConfig
from k3m.evaluation.corruption import SETTINGS, CorruptionPlan, plan_corruption, product_keys
from k3m.embedding.encoder import ItemEncoder
from k3m.evaluation.finetune import finetune_and_measure
from k3m.evaluation.models import MODELS, load_model, pretrain_model
from k3m.model.run import ResolvedRun
from k3m.evaluation.pools import make_pools
from k3m.evaluation.probe import gather, train_probe
from k3m.evaluation.report import write_report
from k3m.evaluation.results import CellResult, ResultStore, cell_key
from k3m.evaluation.tasks import make_task
from k3m.evaluation.tasks.base import HeadTask
from k3m.evaluation.transe import train_transe

CLEAN = "clean"
# what a results.jsonl depends on besides its cell keys: resuming under other values would
# mix incomparable numbers (the grid lists may grow freely)
FINGERPRINT = ("build", "pools", "pretrain", "probe", "finetune", "alignment", "link_prediction", "transe_training",
               "baselines")


class OutputConflict(UserError, ValueError):
    """The output directory holds results of an incomparable configuration."""


def log(message: str) -> None:
    print(f"[k3m evaluate {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class EvaluationRun:
    def __init__(self, config: EvaluationConfig):
        self.cfg = config
        self.out = Path(config.out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.check_resumable()
        self.store = ResultStore(self.out / "results.jsonl")
        self.build = CatalogBuild.open(config.build)
        self.index = CatalogIndex.from_build(self.build)
        self.pools = make_pools(self.build, config.pools.finetune_items, config.pools.test_items, config.seed)
        # the product of every item: the probe's validation split keeps a product on one side
        self.product = product_keys(self.build, np.arange(self.build.num_items))
        self.tasks = {name: make_task(name, config) for name in config.tasks}
        for task in self.tasks.values():
            task.prepare(self.build, self.pools, config.seed)
        head_tasks = [t for t in self.tasks.values() if isinstance(t, HeadTask)]
        vector_tasks = [t for t in self.tasks.values() if t.scores_vectors]
        # only the items some task uses are encoded
        self.finetune_rows = np.unique(np.concatenate([t.train.rows.ravel() for t in head_tasks]
                                                      + [np.intersect1d(t.rows, self.pools.finetune) for t in vector_tasks]
                                                      + [np.empty(0, np.int64)]))
        test_sets = [t.test.rows.ravel() for t in self.tasks.values() if not t.clean_only and not t.scores_vectors]
        test_sets += [np.intersect1d(t.rows, self.pools.test) for t in vector_tasks]
        self.test_rows = np.unique(np.concatenate(test_sets + [np.empty(0, np.int64)]))

    def check_resumable(self) -> None:
        meta = self.out / "meta.json"
        if not meta.is_file():
            return
        before, now = json.loads(meta.read_text())["config"], self.cfg.to_dict()
        changed = [k for k in FINGERPRINT if before.get(k) != now[k]]
        checkpoints = {k: v for k, v in before.get("checkpoints", {}).items() if now["checkpoints"].get(k) != v}
        if changed or checkpoints:
            what = ", ".join(changed + [f"checkpoints.{k}" for k in checkpoints])
            raise OutputConflict(f"{self.out} holds results made with another {what}; use another --out or remove it")

    # -- corruption ----------------------------------------------------------------------
    def conditions(self) -> list[tuple[str, float]]:
        return [(CLEAN, 0.0)] + [(s, r) for s in self.cfg.settings for r in self.cfg.ratios if r > 0]

    def plan(self, setting: str, ratio: float, rows: np.ndarray, tag: str) -> CorruptionPlan | None:
        if setting == CLEAN:
            return None
        return plan_corruption(
            setting, ratio, rows, seed=self.cfg.seed, split_tag=tag,
            title_present=np.array([self.index.titles[r] is not None for r in rows], dtype=bool),
            image_present=self.index.has_image[rows],
            product_key=product_keys(self.build, rows),
        )

    # -- models --------------------------------------------------------------------------
    def tasks_for(self, name: str) -> list[str]:
        """K3M-family models: every task (LPM-scored ones only with knowledge); off-the-shelf
        representations: the tasks a head learns."""
        if name == "most_frequent":  # no vectors: only the tasks a head learns have a guess
            return [n for n, t in self.tasks.items() if t.trains_head]
        if name in BASELINES:
            return [n for n, t in self.tasks.items() if t.trains_head or t.scores_vectors]
        knowledge = MODELS[name].switches.get("use_knowledge", True)
        return [n for n, t in self.tasks.items() if knowledge or not t.needs_lpm]

    def reads(self, name: str) -> set[str]:
        """The modalities a model or representation reads."""
        if name in BASELINES:
            return set(BASELINES[name].uses)
        switches = {"use_title": True, "use_image": True, "use_knowledge": True, **MODELS[name].switches}
        return {m for m in ("title", "image", "knowledge") if switches[f"use_{m}"]}

    def pending(self, name: str, setting: str, ratio: float) -> list[str]:
        tasks = [n for n in self.tasks_for(name) if setting == CLEAN or not self.tasks[n].clean_only]
        return [n for n in tasks if not self.store.has(cell_key(n, setting, ratio, name, self.cfg.mode, self.cfg.seed))]

    def checkpoint(self, name: str) -> Path:
        if name in self.cfg.checkpoints:
            return Path(self.cfg.checkpoints[name])
        log(f"pretraining {name} ({self.cfg.pretrain.config}, {' '.join(self.cfg.pretrain.overrides)})")
        result = pretrain_model(MODELS[name], self.cfg.pretrain, self.cfg.build, self.cfg.seed)
        log(f"{name}: {'reusing' if result.reused else 'pretrained'} {result.run_dir}")
        timed = any(t["part"] == "pretrain" and t["name"] == name for t in self.store.timings())
        if not result.reused:
            self.store.add_timing("pretrain", name, result.seconds, run_dir=str(result.run_dir))
        elif result.seconds and not timed:  # pretrained by another process (--pretrain-only): its own wall time
            self.store.add_timing("pretrain", name, result.seconds, run_dir=str(result.run_dir), elsewhere=True)
        return result.run_dir

    def model_index(self, checkpoint: "Path | ResolvedRun", model_config) -> CatalogIndex:
        """The build's index as the model reads it: pairs in the order ``checkpoint`` was
        trained with, images from its region file if it reads regions (usually the shared
        index: models pretrained on this build with pixels)."""
        order = ResolvedRun.resolve(checkpoint).property_order
        same_order = order is None or order == self.index.property_order
        if same_order and not model_config.frozen and not (model_config.use_image and model_config.image.kind == "region"):
            return self.index
        return index_for(self.build, model_config, property_order=order)

    def baseline_config(self):
        """The baselines' settings, their image resolution resolved: 0 = the one K3M's
        features are chosen at on this catalog (the pretraining budget's model config, the
        choice recorded in the build), so both read the same image features."""
        config = self.cfg.baselines
        if config.image_size:
            return config
        from dataclasses import replace

        from encoders.resolution import resolution_for_build
        from k3m.training import TrainConfig

        train_config = TrainConfig.load(self.cfg.pretrain.config, list(self.cfg.pretrain.overrides))
        model = train_config.model
        if model.frozen and model.image.image_size:
            size = model.image.image_size
        else:  # as pretraining chooses it (k3m.training.prepare.resolve_feature_resolution)
            device = "cuda" if torch.cuda.is_available() and train_config.device != "cpu" else "cpu"
            size = resolution_for_build(self.build, model.image.feature_budget_minutes, device,
                                        model.image.efficientnet).size
        return replace(config, image_size=size)

    # -- the grid ------------------------------------------------------------------------
    def run(self) -> None:
        start = time.perf_counter()
        self.write_meta()
        for name in self.cfg.models:
            if not any(self.pending(name, s, r) for s, r in self.conditions()):
                log(f"{name}: every cell already in {self.store.path}")
                continue
            if name in BASELINES:
                if self.cfg.threads:
                    torch.set_num_threads(self.cfg.threads)
                if name == "most_frequent":
                    self.run_majority(name)
                    continue
                t0 = time.perf_counter()
                encoder = BaselineEncoder(BASELINES[name], self.build, self.index,
                                          np.union1d(self.finetune_rows, self.test_rows), self.baseline_config())
                self.store.add_timing("features", name, time.perf_counter() - t0)
                self.run_model(name, encoder)
                continue
            checkpoint = ResolvedRun.resolve(self.checkpoint(name))  # once: the model and its pair order agree
            if self.cfg.threads:  # after pretraining, which sets its own thread count
                torch.set_num_threads(self.cfg.threads)
            model, tokenizer = load_model(MODELS[name], checkpoint, self.cfg.device)
            encoder = ItemEncoder(
                model, tokenizer, self.model_index(checkpoint, model.config), MODELS[name].knowledge_as_title_text,
                self.cfg.encode_batch_size, self.cfg.seed,
            )
            self.run_model(name, encoder)
        for task_name, task in self.tasks.items():
            if task.kg_anchor and self.cfg.transe:
                if self.cfg.threads:
                    torch.set_num_threads(self.cfg.threads)
                self.run_transe(task_name, task)
        self.store.add_timing("run", "total", time.perf_counter() - start)
        self.write_meta()
        write_report(self.out)

    def run_majority(self, name: str) -> None:
        """The guess that reads no input: the same at every ratio (stored per condition so the
        tables read alike)."""
        cfg = self.cfg
        for setting, ratio in self.conditions():
            for task_name in self.pending(name, setting, ratio):
                task = self.tasks[task_name]
                t0 = time.perf_counter()
                metrics = task.majority_baseline()
                self.store.add(CellResult(task_name, setting, ratio, name, cfg.mode, cfg.seed, metrics,
                                          time.perf_counter() - t0, task.sizes()))
        log(f"{name}: done")

    def run_model(self, name: str, encoder) -> None:
        cfg = self.cfg
        clean: dict[str, torch.Tensor] = {}
        for setting, ratio in self.conditions():
            pending = self.pending(name, setting, ratio)
            if not pending:
                continue
            log(f"{name} {setting} {ratio:.0%}: {', '.join(pending)}")
            plans = {
                "finetune": self.plan(setting, ratio, self.finetune_rows, "finetune"),
                "test": self.plan(setting, ratio, self.test_rows, "test"),
            }
            if setting != CLEAN and self.ignores(name, setting):
                self.reuse_clean(name, setting, ratio, pending)  # same inputs as clean: same cells
                continue
            vectors = self._vectors(name, encoder, setting, ratio, plans, pending, clean)
            for task_name in pending:
                task = self.tasks[task_name]
                t0 = time.perf_counter()
                fitted = {}
                if task.scores_vectors:  # the vectors themselves, over both pools
                    both = np.concatenate([self.finetune_rows, self.test_rows])
                    order = np.argsort(both, kind="stable")
                    metrics = task.measure_vectors(both[order], torch.cat([vectors["finetune"], vectors["test"]])[torch.from_numpy(order)])
                elif not task.trains_head:  # scored by the model's LPM over the task's own items
                    rows, task_vectors = task.rows, vectors.get("test_repr")  # the LPM scores c*
                    if task_vectors is not None and np.isin(rows, self.test_rows).all():
                        task_vectors = task_vectors[torch.from_numpy(np.searchsorted(self.test_rows, rows))]
                    else:
                        _, task_vectors = self._encode(name, encoder, rows, plans["test"], setting, ratio, part="encode_lp")
                        t0 = time.perf_counter()  # the cell's own time is the scoring
                    metrics = task.score(encoder.lpm_scorer(rows, task_vectors))
                elif cfg.mode == "probe" or name in BASELINES:  # frozen features: probed in either mode
                    probe = train_probe(
                        task, gather(vectors["finetune"], self.finetune_rows, task.train), vectors["finetune"], cfg.probe,
                        cfg.seed, groups=self.product[task.train.rows[:, 0]],
                    )
                    metrics = probe.measure(task, gather(vectors["test"], self.test_rows, task.test))
                    fitted = probe.describe()
                else:
                    metrics = finetune_and_measure(task, encoder, plans["finetune"], plans["test"], cfg.finetune, cfg.seed)
                seconds = time.perf_counter() - t0
                self.store.add(CellResult(task_name, setting, ratio, name, cfg.mode, cfg.seed, metrics, seconds, task.sizes(),
                                          probe=fitted))
                shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k in task.metrics)
                log(f"  {task_name}: {shown} ({seconds:.1f}s)")

    def _vectors(self, name, encoder, setting, ratio, plans, pending, clean) -> dict[str, torch.Tensor]:
        """c* of the pools under the condition, encoded once for all pending tasks."""
        needs = set()
        for task_name in pending:
            task = self.tasks[task_name]
            if task.clean_only:
                continue  # encodes its own items
            if task.scores_vectors:
                needs |= {"finetune", "test"}
            elif not task.trains_head:
                needs.add("test")
            elif self.cfg.mode == "probe" or name in BASELINES:
                needs |= {"finetune", "test"}
        ignores = setting != CLEAN and self.ignores(name, setting)
        out = {}
        for role in sorted(needs):
            rows = self.finetune_rows if role == "finetune" else self.test_rows
            if setting == CLEAN or ignores:
                if role not in clean:
                    clean[role] = self._encode(name, encoder, rows, None, CLEAN, 0.0)
                encoded = clean[role]
            else:
                encoded = self._encode(name, encoder, rows, plans[role], setting, ratio)
            out[role], out[f"{role}_repr"] = encoded
        return out

    def ignores(self, name: str, setting: str) -> bool:
        """Whether ``setting`` corrupts only modalities the model does not read (its inputs
        are then the clean ones)."""
        touches, reads = SETTINGS[setting].target, self.reads(name)
        if touches in ("title", "image"):
            return touches not in reads
        return not ({"title", "image"} & reads)  # both / mixed

    def reuse_clean(self, name: str, setting: str, ratio: float, pending: list[str]) -> None:
        """Cells of a condition whose inputs are the clean ones: the clean cells (the heads
        are seeded, so computing them again gives the same numbers), marked as reused."""
        cfg = self.cfg
        clean = {c["task"]: c for c in self.store.cells()
                 if (c["setting"], c["model"], c["mode"], c["seed"]) == (CLEAN, name, cfg.mode, cfg.seed)}
        for task_name in pending:
            source = clean.get(task_name)
            if source is None:
                continue  # the clean cell comes first in the grid; without it nothing to reuse
            self.store.add(CellResult(task_name, setting, ratio, name, cfg.mode, cfg.seed, source["metrics"], 0.0,
                                      source["sizes"], reused_clean=True))
        log(f"{name} {setting} {ratio:.0%}: reads none of what {setting} corrupts: the clean cells")

    def _encode(self, name, encoder, rows, plan, setting, ratio, part: str = "encode"):
        """(item vectors, c* or None): K3M models give both in one pass (the LPM scores c*);
        the off-the-shelf representations only vectors."""
        t0 = time.perf_counter()
        encoded = encoder.encode_both(rows, plan) if hasattr(encoder, "encode_both") else (encoder.encode(rows, plan), None)
        fields = {"setting": setting, "ratio": ratio} if part == "encode" else {}
        self.store.add_timing(part, name, time.perf_counter() - t0, **fields, items=len(rows))
        return encoded

    def run_transe(self, task_name: str, task) -> None:
        cfg = self.cfg
        if self.store.has(cell_key(task_name, CLEAN, 0.0, "transe", cfg.mode, cfg.seed)):
            return
        log(f"TransE: training {cfg.transe_training.num_epochs} epochs on the train triples")
        anchor = train_transe(self.build, cfg.transe_training)
        self.store.add_timing("transe", "transe", anchor.train_seconds, losses=anchor.losses)
        t0 = time.perf_counter()
        metrics = task.score(anchor.score_values)
        seconds = time.perf_counter() - t0
        self.store.add(CellResult(task_name, CLEAN, 0.0, "transe", cfg.mode, cfg.seed, metrics, seconds, task.sizes()))
        log(f"  {task_name} transe: mrr {metrics['mrr']:.4f}")

    def write_meta(self) -> None:
        """What the report needs besides the results: config, data, pools, task sizes, notes."""
        meta = {
            "config": self.cfg.to_dict(),
            "build": {
                "path": str(self.build.path),
                "items": self.build.num_items,
                "triples": int(len(self.build.triples)),
                "splits": self.build.summary.get("splits"),
                "triple_splits": self.build.summary.get("triple_splits"),
            },
            "pools": {"finetune": int(len(self.pools.finetune)), "test": int(len(self.pools.test))},
            "encoded": {"finetune": int(len(self.finetune_rows)), "test": int(len(self.test_rows))},
            "tasks": {name: task.sizes() for name, task in self.tasks.items()},
            "torch_threads": torch.get_num_threads(),
        }
        (self.out / "meta.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")


def run_evaluation(config: EvaluationConfig, redo: list[str] = ()) -> Path:
    """Run (or resume) the grid of ``config`` and write its report; returns the output dir.
    ``redo``: tasks whose finished cells are dropped first and computed again."""
    run = EvaluationRun(config)
    if redo:
        unknown = sorted(set(redo) - set(config.tasks))
        if unknown:
            raise InvalidValue(f"--redo {', '.join(unknown)}: not a task of this grid ({', '.join(config.tasks)})")
        parts = {part for name in redo for part in run.tasks[name].timing_parts}
        log(f"redo {', '.join(redo)}: dropped {run.store.forget(list(redo), parts)} lines of {run.store.path}")
    run.run()
    return Path(config.out_dir)


def pretrain_all(config: EvaluationConfig) -> list[Path]:
    """Pretrain every model of the grid that has no given checkpoint, and nothing else.

    Meant to run beside ``evaluate`` on the same config (one more core busy): models another
    process is pretraining are skipped first and waited for last, and the grid reuses every
    finished run, taking its pretraining time from the run's summary."""
    names = [n for n in config.models if n not in config.checkpoints]
    done, skipped = [], []
    for wait in (False, True):
        for name in skipped if wait else names:
            result = pretrain_model(MODELS[name], config.pretrain, config.build, config.seed, wait=wait)
            if result is None:
                log(f"{name}: being pretrained by another process; coming back to it")
                skipped.append(name)
                continue
            log(f"{name}: {'already pretrained' if result.reused else 'pretrained'} {result.run_dir}")
            done.append(result.run_dir)
    return done
