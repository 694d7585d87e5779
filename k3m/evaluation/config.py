"""EvaluationConfig: the grid (tasks × settings × ratios × models) and every budget, as
dataclasses with explicit defaults. Loaded from YAML (``configs/evaluate*.yaml``) with
``--set key=value`` overrides (dotted keys reach into sections: ``--set pools.test_items=500``).
Unknown keys are an error.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Optional

from k3m.config import Config, ConfigError
from k3m.evaluation.corruption import SETTINGS
from k3m.evaluation.finetune import FinetuneConfig
from k3m.evaluation.probe import ProbeConfig
from k3m.evaluation.baselines import BASELINES, BaselineConfig
from k3m.evaluation.tasks import TASKS
from k3m.evaluation.transe import TransEConfig

MODES = ("probe", "finetune")


@dataclass
class PoolConfig:
    """How many items fine-tune the heads and how many are tested (whole groups; None = all)."""

    finetune_items: Optional[int] = 3000
    test_items: Optional[int] = 1500


@dataclass
class PretrainBudget:
    """How `k3m evaluate` pretrains the models it compares: one training config and the same
    overrides for every model; only the model's modality switches differ."""

    config: str = "configs/pretrain_cpu.yaml"
    overrides: list[str] = field(default_factory=lambda: ["max_steps=300", "progress=false"])
    run_root: str = "runs/evaluate"  # pretraining runs go to RUN_ROOT/<model> (checkpoints stay out of reports)


@dataclass
class AlignmentConfig:
    max_positives_per_group: int = 3
    hard_negatives: int = 1
    random_negatives: int = 1


@dataclass
class LinkPredictionConfig:
    max_queries: Optional[int] = 5000  # seeded sample of the test facts; None = all


@dataclass
class EvaluationConfig(Config):
    WHAT: ClassVar[str] = "evaluation config"

    build: str = "data/builds/fashion44k"
    out_dir: str = "reports/evaluation"
    mode: str = "probe"  # probe (frozen c*, trained head) | finetune (head + model)
    seed: int = 0
    tasks: list[str] = field(default_factory=lambda: ["classification", "qa"])
    settings: list[str] = field(default_factory=lambda: list(SETTINGS))
    ratios: list[float] = field(default_factory=lambda: [0.0, 0.2, 0.5, 0.8, 1.0])
    models: list[str] = field(default_factory=lambda: ["k3m", "no_kg", "pkg_text", "title_only", "image_only"])
    checkpoints: dict[str, str] = field(default_factory=dict)  # model name -> checkpoint/run dir (skips pretraining)
    transe: bool = True  # the PyKEEN TransE anchor, when link_prediction is a task
    device: str = "cpu"
    # torch intra-op threads for encoding and heads. 1 by default: on the shared 2-core CPU,
    # 2 threads measured 2-5x *slower* (encoding 150 vs 44-68 items/s, the QA probe 4 vs 16 s)
    threads: Optional[int] = 1
    encode_batch_size: int = 256
    pools: PoolConfig = field(default_factory=PoolConfig)
    pretrain: PretrainBudget = field(default_factory=PretrainBudget)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    alignment: AlignmentConfig = field(default_factory=AlignmentConfig)
    link_prediction: LinkPredictionConfig = field(default_factory=LinkPredictionConfig)
    transe_training: TransEConfig = field(default_factory=TransEConfig)
    baselines: BaselineConfig = field(default_factory=BaselineConfig)

    def __post_init__(self) -> None:
        from k3m.evaluation.models import MODELS

        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {MODES}, got {self.mode!r}")
        for name, allowed, given in (
            ("task", tuple(TASKS), self.tasks),
            ("setting", tuple(SETTINGS), self.settings),
            ("model", tuple(MODELS) + tuple(BASELINES), self.models),
        ):
            unknown = sorted(set(given) - set(allowed))
            if unknown:
                raise ConfigError(f"unknown {name}(s) {unknown}; choose from {list(allowed)}")
        unknown = sorted(set(self.checkpoints) - (set(self.models) - set(BASELINES)))
        if unknown:
            raise ConfigError(f"checkpoints given for models not in the grid: {unknown}")
        self.ratios = sorted(float(r) for r in self.ratios)
        if any(not 0.0 <= r <= 1.0 for r in self.ratios):
            raise ConfigError(f"ratios must lie in [0, 1], got {self.ratios}")
