"""One input adapter per encoder mode (``K3MConfig.encoders``): its collation, its typed
input sub-batch and its targets (k3m.model.inputs). The shared collation is
k3m.data.collate.K3MCollator."""
from k3m.data.adapters.base import Collated, InputAdapter, PairArrays
from k3m.data.adapters.features import FeatureAdapter
from k3m.data.adapters.tokens import TokenAdapter

ADAPTERS: dict[str, type[InputAdapter]] = {"trainable": TokenAdapter, "frozen": FeatureAdapter}


def adapter_for(config) -> type[InputAdapter]:
    """The input adapter of ``config.encoders``."""
    return ADAPTERS[config.encoders]


__all__ = ["ADAPTERS", "Collated", "FeatureAdapter", "InputAdapter", "PairArrays", "TokenAdapter", "adapter_for"]
