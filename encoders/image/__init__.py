"""Image encoders behind one interface (encoders.image.base.ImageEncoder)."""
from encoders.image.base import ImageEncoder, VisualTokens
from encoders.image.cached import CachedGridEncoder
from encoders.image.cnn import CNNGridEncoder
from encoders.image.efficientnet import EfficientNetGridEncoder
from encoders.image.patch import PatchImageEncoder
from encoders.image.region import RegionImageEncoder

ENCODERS = {"patch": PatchImageEncoder, "cnn": CNNGridEncoder, "region": RegionImageEncoder,
            "efficientnet": EfficientNetGridEncoder}


def build_image_encoder(image_config, frozen: bool = False) -> ImageEncoder:
    """The encoder of ``image_config.kind``; with frozen encoders, the cached EfficientNet grid."""
    return CachedGridEncoder(image_config) if frozen else ENCODERS[image_config.kind](image_config)


__all__ = ["ImageEncoder", "VisualTokens", "CachedGridEncoder", "CNNGridEncoder", "EfficientNetGridEncoder",
           "PatchImageEncoder", "RegionImageEncoder", "build_image_encoder"]
