"""What the service shows of an item, read from the catalog build the embeddings describe.

The store's rows are the build's items (``EmbeddingStore.check_build``), so titles,
categories, images and facts come from the build's columns held in memory: an answer needs
no graph round trip unless a graph constraint asks for one (the graph holds the same build,
`k3m kg load`)."""
from __future__ import annotations

import numpy as np


def _text(value) -> str | None:
    return value if isinstance(value, str) else None  # pandas marks a missing string as NA/NaN


class CatalogView:
    """Per-row display fields and facts of a :class:`etl.catalog_build.CatalogBuild`."""

    def __init__(self, build):
        items = build.items
        self.titles = items["title"].to_numpy(dtype=object)
        self.categories = items["category"].to_numpy(dtype=object)
        self.has_image = items["has_image"].to_numpy(dtype=bool)
        self.properties = list(build.properties)
        self.values = build.values
        self.property_index = {name: n for n, name in enumerate(self.properties)}
        self.triples = np.asarray(build.triples)
        self.offsets = build.item_triple_offsets
        counts = np.bincount(self.triples[:, 1], minlength=len(self.properties))
        self.facts_per_property = dict(zip(self.properties, counts.tolist()))

    def display(self, row: int) -> dict:
        return {"title": _text(self.titles[row]), "category": _text(self.categories[row]),
                "has_image": bool(self.has_image[row])}

    def facts(self, row: int, properties) -> dict[str, str | list[str]]:
        """The item's values of ``properties`` (one value: a string; several: a list)."""
        wanted = {self.property_index[p] for p in properties if p in self.property_index}
        found: dict[str, list[str]] = {}
        for _, p, v in self.triples[self.offsets[row]:self.offsets[row + 1]].tolist():
            if p in wanted:
                found.setdefault(self.properties[p], []).append(self.values[v])
        return {p: vs[0] if len(vs) == 1 else vs for p, vs in found.items()}
