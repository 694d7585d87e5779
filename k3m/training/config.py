"""TrainConfig: every pretraining setting, a dataclass with explicit defaults.

Loaded from a plain YAML file (``configs/tiny.yaml``) with ``--set key=value`` overrides;
values are parsed as YAML (``--set lr=3e-4``, ``--set train_items=null``). Dotted keys reach
into the model config: ``--set model.text.num_layers=4`` (``model`` holds a preset name and
nested :class:`k3m.model.configuration.K3MConfig` overrides). Unknown keys are an error.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Optional

from k3m.config import Config, ConfigError
from k3m.model import K3MConfig

TOKENIZERS = ("train", "pretrained")
PRECISIONS = ("auto", "fp32", "bf16")


@dataclass
class TrainConfig(Config):
    WHAT: ClassVar[str] = "training config"

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
    eval_every: int = 500  # steps between validation passes (and at the end); 0 = end only
    checkpoint_every: int = 1000  # steps between checkpoints (and at the end)
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
        for name in ("log_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1")
        if "preset" not in self.model:
            raise ConfigError("model must be a mapping with a 'preset' name and K3MConfig overrides")

    def model_config(self) -> K3MConfig:
        overrides = {k: v for k, v in self.model.items() if k != "preset"}
        return K3MConfig.from_preset(self.model["preset"], **overrides)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        if isinstance(data.get("model"), dict) or data.get("model") is None and "model" in data:
            data = {**data, "model": {"preset": "tiny", **(data["model"] or {})}}  # a partial section keeps the preset
        config = super().from_dict(data)
        model = config.model_config()  # fail now, not after the tokenizer is trained
        if config.knowledge_as_title_text and model.use_knowledge:
            raise ConfigError("knowledge_as_title_text is the no-knowledge-modality baseline: set model.use_knowledge=false")
        return config
