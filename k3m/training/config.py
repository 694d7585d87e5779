"""TrainConfig: every pretraining setting, a dataclass with explicit defaults.

The defaults are the CPU default run (the ``cpu`` model preset, frozen encoders, batch 256,
4 epochs). A training YAML (``configs/pretrain_*.yaml``) states only what differs from them,
and ``--set key=value`` overrides a field; values are parsed as YAML (``--set lr=3e-4``,
``--set train_items=null``). ``model`` is one typed section, a
:class:`~k3m.model.configuration.K3MConfig`: written in a file as a preset name and nested
overrides of its fields (``model: {preset: tiny, text: {num_layers: 4}}``), saved as the full
config. Dotted keys reach into it: ``--set model.text.num_layers=4``. Unknown keys are an error.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Optional

from k3m.config import Config, ConfigError
from k3m.model import K3MConfig

TOKENIZERS = ("train", "pretrained")
PRECISIONS = ("auto", "fp32", "bf16")
DEFAULT_PRESET = "cpu"  # the model of the CPU default run


def model_section(value) -> K3MConfig:
    """The ``model`` section as a K3MConfig: a preset name (``preset``, default
    ``DEFAULT_PRESET``) with overrides of any of its fields, or a whole saved config."""
    if isinstance(value, K3MConfig):
        return value
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise ConfigError(f"model: expected a mapping (a preset and K3MConfig overrides), got {type(value).__name__}")
    overrides = {k: v for k, v in value.items() if k != "preset"}
    try:
        return K3MConfig.from_preset(value.get("preset") or DEFAULT_PRESET, **overrides)
    except ConfigError as exc:
        raise ConfigError(f"model: {exc}") from None


@dataclass
class TrainConfig(Config):
    WHAT: ClassVar[str] = "training config"

    # data
    build: str = "data/builds/fashion44k"  # catalog build directory (k3m import --out)
    run_dir: str = "runs/k3m"  # checkpoints/, metrics.jsonl, tensorboard/
    train_items: Optional[int] = None  # use only the first N train-split items (quick runs)
    valid_items: Optional[int] = 512  # validation items (first N of the valid split); None = all
    pair_order: str = "shuffle"  # pairs shuffled per epoch before the caps | "fixed" (frequent first)
    num_workers: int = 1  # DataLoader worker processes (persistent); data is ~5% of a step, the other core computes
    # the "+PKG as text" baseline: knowledge text appended to the title (needs
    # model.use_knowledge: false, the knowledge modality is then absent)
    knowledge_as_title_text: bool = False
    # tokenizer: "train" = WordPiece on the build's train titles + knowledge text;
    # "pretrained" = the tokenizer of model.text.pretrained_text_dir (MiniLM's for the cpu
    # preset: kept with the checkpoint, frozen features need no tokenizing)
    tokenizer: str = "pretrained"
    vocab_size: int = 8000  # of a trained tokenizer
    # the model: a K3MConfig (in a file: a preset name and nested overrides of its fields)
    model: K3MConfig = field(default_factory=lambda: K3MConfig.from_preset(DEFAULT_PRESET))
    # optimisation (AdamW, warmup then linear decay to 0)
    seed: int = 0
    batch_size: int = 256  # items per micro-batch and process
    grad_accum: int = 1  # micro-batches per optimizer step
    epochs: int = 4  # about 14 minutes of fashion44k on a 2-core CPU (docs/pretrain.md)
    max_steps: Optional[int] = None  # optimizer steps; None = epochs x steps per epoch, at least min_steps
    # a small catalog is seen more often: 4 epochs of 3,000 items are 40 steps, too few to learn
    # anything; fashion44k's 4 epochs are 556 steps, above it
    min_steps: int = 400
    lr: float = 1e-3
    betas: tuple[float, ...] = (0.9, 0.98)
    weight_decay: float = 0.01
    warmup_fraction: float = 0.1
    max_grad_norm: float = 1.0
    # hardware
    device: str = "auto"  # auto = cuda:LOCAL_RANK when available, else cpu
    # torch intra-op threads of each training process; None = CPU cores left after the
    # loader workers (at least 1): oversubscribed cores make every op wait for stragglers
    threads: Optional[int] = None
    precision: str = "auto"  # auto = bf16 autocast on CUDA, fp32 on CPU
    # deterministic kernels on CPU (torch.use_deterministic_algorithms): the same seed gives
    # the same run, bit for bit, at any fixed thread count; CUDA runs are not bit-reproducible
    deterministic: bool = True
    compile: bool = False  # torch.compile the model (static shapes: padded to the caps)
    ddp_find_unused_parameters: bool = True  # a batch without images leaves image weights unused
    # bookkeeping
    log_every: int = 10  # steps between metrics lines / progress updates
    eval_every: int = 0  # steps between validation passes (and at the end); 0 = end only
    checkpoint_every: int = 500  # steps between checkpoints (and at the end)
    keep_checkpoints: int = 2  # newest step_N dirs kept
    progress: bool = True  # tqdm bar on rank 0

    def __post_init__(self):
        if self.tokenizer not in TOKENIZERS:
            raise ConfigError(f"tokenizer must be one of {TOKENIZERS}, got {self.tokenizer!r}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.batch_size < 1 or self.grad_accum < 1 or self.epochs < 1:
            raise ConfigError("batch_size, grad_accum and epochs must be >= 1")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError("max_steps must be >= 1 (or null: epochs x steps per epoch)")
        if self.min_steps < 0:
            raise ConfigError("min_steps must be >= 0")
        for name in ("log_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1")
        if self.knowledge_as_title_text and self.model.use_knowledge:
            raise ConfigError("knowledge_as_title_text is the no-knowledge-modality baseline: set model.use_knowledge=false")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        if "model" in data:
            data = {**data, "model": model_section(data["model"])}
        return super().from_dict(data)
