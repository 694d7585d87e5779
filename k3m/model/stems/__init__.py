"""One stem per encoder mode (``K3MConfig.encoders``): the batch's typed inputs -> the
initial streams the shared core reads."""
from k3m.model.stems.base import MODALITIES, Stem, StemOutput, Stream
from k3m.model.stems.features import FeatureStem
from k3m.model.stems.tokens import TokenStem


def build_stem(config, load_pretrained_text: bool = True) -> Stem:
    """The stem of ``config.encoders``: cached features projected (frozen), or BERT and an
    image encoder (trainable)."""
    if config.frozen:
        return FeatureStem(config)
    return TokenStem(config, load_pretrained_text)


__all__ = ["MODALITIES", "FeatureStem", "Stem", "StemOutput", "Stream", "TokenStem", "build_stem"]
