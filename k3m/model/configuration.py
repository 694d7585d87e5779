"""K3MConfig: every setting of the K3M model, as nested dataclasses with explicit defaults.

The config is a plain value (k3m.config.Config: typed, unknown keys are errors):
``to_dict``/``from_dict`` round-trip it, ``save(dir)`` writes ``dir/k3m_config.json`` (or
``.yaml``) and ``load(path)`` reads either. Presets are YAML files in ``k3m/model/presets/``
(``K3MConfig.from_preset("tiny")``); the defaults below are the ``tiny`` preset's values, and
a test keeps the two equal.

Baselines of the evaluation are switches on this config:

- ``use_knowledge=False``: ViLBERT/LXMERT-style title+image model (no knowledge stream, no
  structure aggregation, no LPM / knowledge MLM).
- "+PKG as text": ``use_knowledge=False`` and the data pipeline appends the knowledge text
  to the title; the model needs nothing else.
- ``structure_aggregation=False``: keeps the knowledge stream but ``c* = c``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ClassVar, Optional

from k3m.config import Config, ConfigError

CONFIG_NAME = "k3m_config.json"
PRESET_DIR = Path(__file__).resolve().parent / "presets"
IMAGE_KINDS = ("patch", "cnn", "region", "efficientnet")
IIFM_MODES = ("mean", "soft", "hard")
ENCODER_MODES = ("trainable", "frozen")
EFFICIENTNET_FEATURES = 1280


@dataclass
class TextConfig:
    """The BERT shared by title and knowledge text (and standalone property/value strings)."""

    vocab_size: int = 8000
    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 2
    intermediate_size: int = 512
    max_position_embeddings: int = 128
    dropout: float = 0.1
    pad_token_id: int = 0
    max_title_tokens: int = 36
    max_knowledge_tokens: int = 48
    max_pairs: int = 10
    max_string_tokens: int = 16  # standalone property / value strings (LPM, ranking)
    # Local Hugging Face BERT directory (e.g. encoders.text.minilm_dir()) to initialise
    # from; its config.json then fixes the sizes above (see K3MConfig.with_pretrained_text).
    # With encoders: frozen the BERT is not part of the model: its cached features (width
    # feature_size, from the same config.json) are projected to hidden_size.
    pretrained_text_dir: Optional[str] = None
    feature_size: int = 384


@dataclass
class ImageConfig:
    """Visual tokens: ``num_visual_tokens`` maskable tokens plus one global token."""

    kind: str = "patch"  # patch | cnn | region | efficientnet
    image_size: int = 64
    patch_size: int = 8
    hidden_size: int = 128
    num_layers: int = 1  # image-only transformer layers before co-attention
    num_heads: int = 2
    intermediate_size: int = 512
    dropout: float = 0.1
    # cnn: torchvision backbone, trained from scratch unless a local weights file is given
    cnn_backbone: str = "resnet18"
    cnn_weights: Optional[str] = None
    # efficientnet: ImageNet EfficientNet-Lite (local weights) at image_size px, its final
    # 1280-channel map as a grid of (image_size/32)^2 tokens
    efficientnet: str = "lite0"  # lite0 | lite2
    # frozen encoders: the cached grid keeps at most feature_grid cells a side (a larger map is
    # average-pooled), so pretraining reads the same tokens per image at any resolution;
    # image_size 0 = chosen for the catalog when pretraining starts (encoders.resolution: the
    # largest of 96..224 px whose features for the catalog's images fit feature_budget_minutes
    # on this machine; 224 on a GPU) and saved with the model
    feature_grid: int = 3
    feature_budget_minutes: float = 15.0
    # region: precomputed detector output in the original K3M layout
    num_regions: int = 36
    region_feature_dim: int = 2048
    num_region_classes: int = 1601
    region_feature_file: Optional[str] = None

    @property
    def cached_grid(self) -> int:
        """Cells per side of the cached EfficientNet grid (frozen encoders): the map at
        ``image_size`` average-pooled to at most ``feature_grid`` (encoders.frozen.FrozenImage)."""
        return min(self.image_size // 32, self.feature_grid)

    @property
    def num_visual_tokens(self) -> int:
        """Visual tokens per image, the length of ``TokenTargets.visual_mask`` (the global token is not maskable)."""
        if self.kind == "patch":
            return (self.image_size // self.patch_size) ** 2
        if self.kind in ("cnn", "efficientnet"):
            return (self.image_size // 32) ** 2  # both downsample by 32
        if self.kind == "region":
            return self.num_regions
        raise ConfigError(f"image.kind must be one of {IMAGE_KINDS}, got {self.kind!r}")


@dataclass
class CoAttentionConfig:
    """Pairwise two-stream co-attention stacks; a switched-off pair has no layers at all."""

    title_image: bool = True
    knowledge_image: bool = True
    title_knowledge: bool = True
    title_image_layers: int = 1
    knowledge_image_layers: int = 1
    title_knowledge_layers: int = 1
    hidden_size: int = 128  # attention width shared by both streams
    num_heads: int = 2
    intermediate_size: int = 256
    dropout: float = 0.1


@dataclass
class FusionConfig:
    iifm: str = "hard"  # mean | soft | hard (the paper's best)
    gumbel_tau: float = 1.0


@dataclass
class StructureConfig:
    heads: int = 4
    negative_slope: float = 0.2
    dropout: float = 0.0


@dataclass
class MaskingConfig:
    """Read by the data pipeline, which masks inputs before the batch reaches the model.

    Trainable encoders mask tokens (MLM, MOM). Frozen encoders read cached contextual
    features, where an unmasked neighbour still carries a masked token, so masking happens
    at levels the cache cannot leak (docs/model.md): a whole title or image is hidden (or
    swapped for another item's) and the item's own is reconstructed; whole pairs leave the
    knowledge stream and the graph and their values are predicted."""

    title_mlm_prob: float = 0.15
    knowledge_mlm_prob: float = 0.15  # of value tokens of the knowledge text
    mask_token_frac: float = 0.8
    random_token_frac: float = 0.1  # the rest (0.1) is kept unchanged
    mom_prob: float = 0.15
    # frozen encoders
    title_hide_prob: float = 0.15
    title_swap_prob: float = 0.1
    image_hide_prob: float = 0.15
    image_swap_prob: float = 0.1
    joint_swap_prob: float = 0.0  # title and image both from one other item (checked first)
    pair_mask_prob: float = 0.15


@dataclass
class LPMConfig:
    margin: float = 1.0  # gamma of max(0, gamma + S(pos) - S(neg))
    num_negatives: int = 4  # K corrupted values (and K corrupted items) per positive
    # values of any property as further negatives (the paper corrupts within the property;
    # ranking against every value, the standard protocol, needs these too)
    random_negatives: int = 0
    norm: int = 2  # p of the distance ||c* + p - v||_p
    corrupt_items: bool = True


@dataclass
class KeepConfig:
    """The kept path (frozen encoders): the item vector keeps what the item's frozen features
    carry, beside c*. Per modality, the pooled frozen feature (the title's mean token feature,
    the mean image grid cell, the mean of the pairs' "property : value" vectors) is scaled to
    unit length, centred and projected onto its ``dims`` principal components, all fitted on
    the train items before pretraining (buffers of the model, saved with it). An absent title
    or image is filled from c* by its reconstruction head (``impute``). 0 dims: no block;
    all 0 (the default, and every checkpoint made before this existed): the item vector is c*.
    """

    title: int = 0
    image: int = 0
    knowledge: int = 0
    impute: bool = True
    # a shown title or image is filled from c* as far as the consistency head judges it another
    # item's (needs loss.consistency > 0 and impute)
    distrust: bool = False
    # the reconstruction heads (mlm_title, mom) are scored in the kept block's space (unit
    # length, centred, projected) instead of the raw features': what the item vector uses of
    # their guess. In the raw space, guessing the features' common direction already scores
    # well (frozen features are anisotropic), and centring leaves that guess little of the item
    reconstruct_in_block: bool = False
    # pretraining switches distrust off in the model it saves when the consistency head's loss
    # on the validation items is above this (half of guessing, ln 2 / 2): a head that memorised
    # a small catalog's train items judges new items' own titles another's
    distrust_max_valid_loss: float = 0.35
    fit_items: int = 50000  # train items the statistics are fitted on (a seeded sample beyond that)

    @property
    def enabled(self) -> bool:
        return self.title + self.image + self.knowledge > 0


@dataclass
class MatchingConfig:
    """The matching task (frozen encoders; loss weight ``loss.matching``): c* of the item as
    shown (hidden, swapped or intact) against its own clean kept features, InfoNCE over the
    batch in both directions: neighbourhoods of c* follow what the items are."""

    temperature: float = 0.1
    dim: int = 128  # width of the space both sides are projected into


@dataclass
class LossConfig:
    mlm_title: float = 1.0
    mlm_knowledge: float = 1.0
    mom: float = 1.0
    lpm: float = 1.0
    matching: float = 0.0  # needs the kept path (keep.*): its targets are the kept features
    consistency: float = 0.0  # frozen encoders: is the shown title / image the item's own (heads.consistency)
    # FashionBERT-style adaptive weighting, here as learned uncertainty weights
    # (total = sum_k w_k (exp(-s_k) L_k + s_k)); fixed weights when False.
    adaptive: bool = False


@dataclass
class K3MConfig(Config):
    WHAT: ClassVar[str] = "config"
    PRESET_DIR: ClassVar[Path] = PRESET_DIR

    text: TextConfig = field(default_factory=TextConfig)
    image: ImageConfig = field(default_factory=ImageConfig)
    co_attention: CoAttentionConfig = field(default_factory=CoAttentionConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    structure: StructureConfig = field(default_factory=StructureConfig)
    masking: MaskingConfig = field(default_factory=MaskingConfig)
    lpm: LPMConfig = field(default_factory=LPMConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    keep: KeepConfig = field(default_factory=KeepConfig)
    matching: MatchingConfig = field(default_factory=MatchingConfig)
    # modality switches (evaluation baselines)
    use_title: bool = True
    use_image: bool = True
    use_knowledge: bool = True  # knowledge stream + structure aggregation + LPM
    structure_aggregation: bool = True
    # trainable: the encoders are part of the model (from scratch or fine-tuned);
    # frozen: pretrained encoders' outputs come from the feature cache (encoders.cache)
    encoders: str = "trainable"
    preset: Optional[str] = None  # the preset it was made from (informational)

    def __post_init__(self) -> None:
        self.validate()

    # -- derived --------------------------------------------------------------------
    @property
    def hidden_size(self) -> int:
        """Width of c, c* and property/value vectors (= the text encoder's width)."""
        return self.text.hidden_size

    @property
    def num_visual_tokens(self) -> int:
        if self.frozen and self.image.kind == "efficientnet":
            return self.image.cached_grid ** 2
        return self.image.num_visual_tokens

    @property
    def frozen(self) -> bool:
        return self.encoders == "frozen"

    @property
    def kept_dims(self) -> dict[str, int]:
        """Width of each kept block (frozen encoders, modalities the model uses), 0 = none."""
        if not self.frozen:
            return {"title": 0, "image": 0, "knowledge": 0}
        k = self.keep
        return {"title": k.title if self.use_title else 0, "image": k.image if self.use_image else 0,
                "knowledge": k.knowledge if self.use_knowledge else 0}

    @property
    def embedding_size(self) -> int:
        """Width of the item vector: c*, then the kept blocks."""
        return self.hidden_size + sum(self.kept_dims.values())

    def validate(self) -> None:
        if self.encoders not in ENCODER_MODES:
            raise ConfigError(f"encoders must be one of {ENCODER_MODES}, got {self.encoders!r}")
        if self.frozen:
            if (self.use_title or self.use_knowledge) and not self.text.pretrained_text_dir:
                raise ConfigError("encoders: frozen reads a pretrained text encoder's features: set text.pretrained_text_dir (e.g. minilm)")
            if self.use_image and self.image.kind != "efficientnet":
                raise ConfigError("encoders: frozen reads cached EfficientNet features: set image.kind: efficientnet")
        if self.image.kind == "efficientnet" and self.image.image_size % 32:
            raise ConfigError("image.image_size must be a multiple of 32 for image.kind efficientnet")
        if self.image.image_size == 0 and not self.frozen:
            raise ConfigError("image.image_size 0 (chosen for the catalog) is for frozen encoders; set a size")
        if self.image.image_size < 0 or self.image.feature_grid < 1 or self.image.feature_budget_minutes <= 0:
            raise ConfigError("image.image_size must be >= 0, image.feature_grid >= 1, image.feature_budget_minutes > 0")
        if self.image.kind not in IMAGE_KINDS:
            raise ConfigError(f"image.kind must be one of {IMAGE_KINDS}, got {self.image.kind!r}")
        if self.fusion.iifm not in IIFM_MODES:
            raise ConfigError(f"fusion.iifm must be one of {IIFM_MODES}, got {self.fusion.iifm!r}")
        if not (self.use_title or self.use_image or self.use_knowledge):
            raise ConfigError("at least one of use_title, use_image, use_knowledge must be True")
        if self.image.kind == "patch" and self.image.image_size % self.image.patch_size:
            raise ConfigError("image.image_size must be a multiple of image.patch_size")
        for name, width, heads in (
            ("text", self.text.hidden_size, self.text.num_heads),
            ("image", self.image.hidden_size, self.image.num_heads),
            ("co_attention", self.co_attention.hidden_size, self.co_attention.num_heads),
            ("structure", self.text.hidden_size, self.structure.heads),
        ):
            if width % heads:
                raise ConfigError(f"{name}: hidden size {width} is not divisible by {heads} heads")
        if self.lpm.norm not in (1, 2):
            raise ConfigError("lpm.norm must be 1 or 2")
        for name, width in (("title", self.text.feature_size), ("image", EFFICIENTNET_FEATURES),
                            ("knowledge", self.text.feature_size)):
            if not 0 <= getattr(self.keep, name) <= width:
                raise ConfigError(f"keep.{name} must lie in 0..{width} (the frozen feature's width)")
        if self.loss.matching > 0 and not (self.frozen and self.keep.enabled):
            raise ConfigError("loss.matching compares c* with the kept features: it needs encoders: frozen and keep.* > 0")
        if self.loss.consistency > 0 and not self.frozen:
            raise ConfigError("loss.consistency judges the cached features an item shows: it needs encoders: frozen")
        if self.keep.distrust and not (self.keep.enabled and self.keep.impute and self.loss.consistency > 0):
            raise ConfigError("keep.distrust fills a distrusted block from c*: it needs keep.* > 0, keep.impute and loss.consistency > 0")
        if self.keep.distrust_max_valid_loss < 0:
            raise ConfigError("keep.distrust_max_valid_loss must be >= 0 (a binary cross-entropy)")
        if self.matching.temperature <= 0 or self.matching.dim < 1:
            raise ConfigError("matching.temperature must be > 0 and matching.dim >= 1")

    # -- files ------------------------------------------------------------------------
    def save(self, directory: str | Path, filename: str = CONFIG_NAME) -> Path:
        """Write the config into ``directory`` as JSON (or YAML when filename ends .yaml)."""
        return super().save(Path(directory) / filename)

    @classmethod
    def load(cls, path: str | Path, overrides: list[str] | tuple = ()) -> "K3MConfig":
        """Read a config file, or ``k3m_config.json`` inside a directory."""
        path = Path(path)
        return super().load(path / CONFIG_NAME if path.is_dir() else path, overrides)

    def with_tokenizer(self, tokenizer) -> "K3MConfig":
        """Copy with vocab size and pad id taken from a (trained or loaded) tokenizer."""
        text = replace(self.text, vocab_size=len(tokenizer), pad_token_id=int(tokenizer.pad_token_id))
        return replace(self, text=text)

    def with_pretrained_text(self, directory: str | Path) -> "K3MConfig":
        """Copy whose text sizes come from a local HF BERT directory's config.json (with
        frozen encoders: the width of its features; the model's own widths stay)."""
        bert = json.loads((Path(directory) / "config.json").read_text())
        if bert.get("model_type", "bert") != "bert":
            raise ConfigError(f"{directory}: model_type {bert.get('model_type')!r}, expected a BERT checkpoint")
        if self.frozen:
            text = replace(self.text, vocab_size=bert["vocab_size"], pad_token_id=bert.get("pad_token_id", 0),
                           feature_size=bert["hidden_size"], pretrained_text_dir=str(Path(directory).resolve()))
            return replace(self, text=text)
        text = replace(
            self.text,
            vocab_size=bert["vocab_size"],
            hidden_size=bert["hidden_size"],
            num_layers=bert["num_hidden_layers"],
            num_heads=bert["num_attention_heads"],
            intermediate_size=bert["intermediate_size"],
            max_position_embeddings=bert["max_position_embeddings"],
            pad_token_id=bert.get("pad_token_id", 0),
            pretrained_text_dir=str(Path(directory).resolve()),
        )
        return replace(self, text=text)
