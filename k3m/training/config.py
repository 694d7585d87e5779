"""TrainConfig: every pretraining setting, a dataclass with explicit defaults.

Loaded from a plain YAML file (``configs/tiny.yaml``) with ``--set key=value`` overrides;
values are parsed as YAML (``--set lr=3e-4``, ``--set train_items=null``). Dotted keys reach
into the model config: ``--set model.text.num_layers=4`` (``model`` holds a preset name and
nested :class:`k3m.model.configuration.K3MConfig` overrides). Unknown keys are an error.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Optional

import yaml

TOKENIZERS = ("train", "pretrained")
PRECISIONS = ("auto", "fp32", "bf16")


@dataclass
class TrainConfig:
    # data
    build: str = "data/builds/fashion44k"  # catalog build directory (k3m import --out)
    run_dir: str = "runs/k3m"  # checkpoints/, metrics.jsonl, tensorboard/
    train_items: Optional[int] = None  # use only the first N train-split items (quick runs)
    valid_items: Optional[int] = 512  # validation items (first N of the valid split); None = all
    pair_order: str = "shuffle"  # pairs shuffled per epoch before the caps | "fixed" (frequent first)
    num_workers: int = 2  # DataLoader worker processes (persistent)
    # the "+PKG as text" baseline: knowledge text appended to the title (needs
    # model.use_knowledge: false, the knowledge modality is then absent)
    knowledge_as_title_text: bool = False
    # tokenizer: "train" = WordPiece on the build's train titles + knowledge text;
    # "pretrained" = the tokenizer of model.text.pretrained_text_dir
    tokenizer: str = "train"
    vocab_size: int = 8000
    # model: a K3MConfig preset plus nested overrides of its fields
    model: dict = field(default_factory=lambda: {"preset": "tiny"})
    # optimisation (AdamW, warmup then linear decay to 0)
    seed: int = 0
    batch_size: int = 32  # items per micro-batch and process
    grad_accum: int = 1  # micro-batches per optimizer step
    epochs: int = 1
    max_steps: Optional[int] = None  # optimizer steps; None = epochs x steps per epoch
    lr: float = 5e-4
    betas: tuple = (0.9, 0.98)
    weight_decay: float = 0.01
    warmup_fraction: float = 0.1
    max_grad_norm: float = 1.0
    # hardware
    device: str = "auto"  # auto = cuda:LOCAL_RANK when available, else cpu
    # torch intra-op threads of each training process; None = CPU cores left after the
    # loader workers (at least 1): oversubscribed cores make every op wait for stragglers
    threads: Optional[int] = None
    precision: str = "auto"  # auto = bf16 autocast on CUDA, fp32 on CPU
    compile: bool = False  # torch.compile the model (static shapes: padded to the caps)
    ddp_find_unused_parameters: bool = True  # a batch without images leaves image weights unused
    # bookkeeping
    log_every: int = 10  # steps between metrics lines / progress updates
    eval_every: int = 500  # steps between validation passes (and at the end); 0 = end only
    checkpoint_every: int = 1000  # steps between checkpoints (and at the end)
    keep_checkpoints: int = 2  # newest step_N dirs kept
    progress: bool = True  # tqdm bar on rank 0

    def __post_init__(self):
        # YAML 1.1 reads "2e-3" as a string: coerce the float settings
        for name in ("lr", "weight_decay", "warmup_fraction", "max_grad_norm"):
            setattr(self, name, float(getattr(self, name)))
        self.betas = tuple(float(b) for b in self.betas)
        if self.tokenizer not in TOKENIZERS:
            raise ValueError(f"tokenizer must be one of {TOKENIZERS}, got {self.tokenizer!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.batch_size < 1 or self.grad_accum < 1 or self.epochs < 1:
            raise ValueError("batch_size, grad_accum and epochs must be >= 1")
        if not isinstance(self.model, dict) or "preset" not in self.model:
            raise ValueError("model must be a mapping with a 'preset' name and K3MConfig overrides")

    def model_config(self):
        from k3m.model import K3MConfig

        overrides = {k: v for k, v in self.model.items() if k != "preset"}
        return K3MConfig.preset(self.model["preset"], **overrides)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["betas"] = list(self.betas)
        return data

    def save(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def load(cls, path: str | Path, overrides: list[str] = ()) -> "TrainConfig":
        data = yaml.safe_load(Path(path).read_text()) or {}
        return cls.from_dict(apply_overrides(data, overrides))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown training config key(s): {', '.join(unknown)}")
        if "model" in data:  # a partial model section keeps the default preset
            data = {**data, "model": {"preset": "tiny", **(data["model"] or {})}}
        config = cls(**data)
        model = config.model_config()  # fail now, not after the tokenizer is trained
        if config.knowledge_as_title_text and model.use_knowledge:
            raise ValueError("knowledge_as_title_text is the no-knowledge-modality baseline: set model.use_knowledge=false")
        return config


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``key=value`` / ``a.b.c=value`` assignments (values parsed as YAML) into a copy."""
    data = yaml.safe_load(yaml.safe_dump(data))  # deep copy
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects key=value, got {item!r}")
        *parents, leaf = key.strip().split(".")
        node = data
        for name in parents:
            node = node.setdefault(name, {})
            if not isinstance(node, dict):
                raise ValueError(f"--set {key}: {name} is not a mapping")
        node[leaf] = yaml.safe_load(raw)
    return data
