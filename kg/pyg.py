"""PyTorch Geometric, imported without its import-time warning.

PyG 2.8 runs ``torch.jit.script`` on two classes while it is imported
(``torch_geometric/nn/pool/select/base.py`` and ``.../connect/base.py``), and torch >= 2.10
answers each call with ``FutureWarning: torch.jit.script is deprecated``: every command that
touches the model printed it. Nothing here scripts anything, and the warning is PyG's to
fix; it is silenced only for that message, only while PyG is first imported. Import this
module before ``torch_geometric`` (later imports are cached and warn nowhere).
"""
from __future__ import annotations

import warnings

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
    import torch_geometric  # noqa: F401
