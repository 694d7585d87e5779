"""Figures of the project (matplotlib, Agg backend: no display needed)."""
from __future__ import annotations

from k3m.plots.projection import ProjectionSettings, embedding_projection

__all__ = ["ProjectionSettings", "embedding_projection"]
