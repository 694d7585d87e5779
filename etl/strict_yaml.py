"""The one YAML reader of the project (mappings, configs, presets, ``--set`` values).

Plain YAML keeps the last of two equal keys in one mapping without a word, so a second
``properties:`` in a mapping, or a second ``lr:`` in a config, would silently drop the first.
:func:`load` refuses that with :class:`DuplicateKey`, naming the key and both lines; it is
a ``yaml.YAMLError``, so callers reporting bad YAML report it too.
"""
from __future__ import annotations

from typing import Any

import yaml


class DuplicateKey(yaml.YAMLError):
    def __init__(self, key, first_line: int, line: int):
        super().__init__(f"{key}: given twice (lines {first_line} and {line}); YAML would keep only the last one silently")
        self.key, self.first_line, self.line = key, first_line, line


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping."""


def _construct_mapping(loader: StrictLoader, node: yaml.MappingNode, deep: bool = False):
    seen: dict = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            if key in seen:
                raise DuplicateKey(key, seen[key] + 1, key_node.start_mark.line + 1)
            seen[key] = key_node.start_mark.line
        except TypeError:  # an unhashable key: construct_mapping reports it
            continue
    return loader.construct_mapping(node, deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load(text: str | bytes) -> Any:
    """``yaml.safe_load`` that refuses duplicate keys (:class:`DuplicateKey`)."""
    return yaml.load(text, Loader=StrictLoader)
