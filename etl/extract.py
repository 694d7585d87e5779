"""Apply a mapping to one record: the item's id, title, label, group, (property, value) pairs
and image reference, with values normalised.

Normalisation: strings are stripped and inner whitespace collapsed to one space; integral
numbers lose their ``.0``; booleans become ``true``/``false``. A value that is empty after
that, or one of the mapping's ``absent`` markers, is dropped (counted in ``drops``).
"""
from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any

from etl.image_template import ImageTemplate
from etl.mapping import Mapping, PropertySpec

REMOTE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_MISSING = object()


class RowRejected(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass
class Item:
    item_id: str
    title: str | None
    category: str | None
    group: str | None
    pairs: list[tuple[str, str]]  # unique, in source order
    image_ref: str | None  # a path under the image root, a URL, or None
    image_reason: str | None = None  # why image_ref is None when the template could not be filled


def normalize(value: Any) -> str | None:
    """The value as a clean string; None for null/NaN. Raises TypeError for dicts and lists."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int):
        text = str(value)
    elif isinstance(value, float):
        if math.isnan(value):
            return None
        text = str(int(value)) if value.is_integer() else repr(value)
    elif isinstance(value, (dict, list, tuple)):
        raise TypeError(type(value).__name__)
    else:  # dates, decimals from Parquet
        text = str(value)
    return " ".join(text.split())


def lookup(record: dict, path: str) -> Any:
    """A dotted path into nested dicts; a key that itself contains dots wins if present."""
    if path in record:
        return record[path]
    value: Any = record
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


class Extractor:
    """Turns records into :class:`Item` for one mapping; counts dropped values in ``drops``."""

    def __init__(self, mapping: Mapping, drops: Counter):
        self.mapping = mapping
        self.total_drops = drops
        self.drops = Counter()  # this row's, merged into total_drops only if the row is kept
        self.absent = frozenset(mapping.absent)
        self.excluded = frozenset(mapping.exclude)
        # per property entry: the entry with its final name, and its absent markers
        self.specs = [
            (replace(spec, name=mapping.rename.get(spec.name, spec.name)) if spec.name else spec,
             frozenset(spec.absent) if spec.absent is not None else self.absent)
            for spec in mapping.properties
        ]
        image = mapping.image
        self.template = ImageTemplate.parse(image.path) if image is not None and image.path is not None else None

    def __call__(self, record: dict) -> Item:
        self.drops.clear()
        m = self.mapping
        item_id = self._scalar(record, m.id, "id")
        if item_id is None or item_id in self.absent:
            raise RowRejected("missing_id", f"no value at {m.id!r}")
        title = self._field(record, m.title)
        category = self._field(record, m.category)
        if m.group == "title":
            group = title.lower() if title else None
        else:
            group = self._field(record, m.group)
            group = group.lower() if group else None

        pairs: dict[tuple[str, str], None] = {}  # insertion-ordered set
        for spec, absent in self.specs:
            value = lookup(record, spec.path)
            if value is _MISSING:  # the field is not in this record: nothing to drop
                continue
            if value is None:
                self.drops["null"] += 1
            elif spec.kind == "column":
                self._add(pairs, spec.name, value, spec, absent)
            elif spec.kind == "expand":
                self._expand(pairs, value, spec, absent)
            else:
                self._knowledge(pairs, value, spec, absent)
        image_ref, image_reason = self._image_ref(record, item_id)
        item = Item(item_id, title, category, group, list(pairs), image_ref, image_reason)
        _check_encodable(item)
        self.total_drops.update(self.drops)
        return item

    def id_of(self, record: dict | None) -> str | None:
        """The id a (rejected) record would have had, or None when it cannot be told: no
        record, no id there, or one holding undecodable bytes (U+FFFD from a lenient read)."""
        value = _MISSING if record is None else lookup(record, self.mapping.id)
        if value is _MISSING:
            return None
        try:
            item_id = normalize(value)
        except TypeError:
            return None
        if not item_id or item_id in self.absent or "\ufffd" in item_id:
            return None
        try:
            item_id.encode("utf-8")
        except UnicodeEncodeError:
            return None
        return item_id

    # -- fields ---------------------------------------------------------------------
    def _scalar(self, record: dict, path: str, what: str) -> str | None:
        value = lookup(record, path)
        if value is _MISSING:
            return None
        try:
            return normalize(value)
        except TypeError as exc:
            raise RowRejected("bad_field", f"{what} at {path!r} is a {exc}, not a single value") from None

    def _field(self, record: dict, path: str | None) -> str | None:
        if path is None:
            return None
        value = self._scalar(record, path, path)
        return value if value and value not in self.absent else None

    def _add(self, pairs: dict, name: str, value: Any, spec: PropertySpec, absent: frozenset) -> None:
        """Adds the (name, value) pairs of one field value (several when split or a list)."""
        if type(value) is str and spec.split is None:  # the common case, kept fast
            texts = [" ".join(value.split())]
        elif value is None:
            self.drops["null"] += 1
            return
        elif isinstance(value, (list, tuple)):
            texts = []
            for element in value:
                self._add(pairs, name, element, spec, absent)
        else:
            try:
                text = normalize(value)
            except TypeError:
                self.drops["not_a_single_value"] += 1
                return
            if text is None:  # NaN
                self.drops["null"] += 1
                return
            texts = [" ".join(t.split()) for t in text.split(spec.split)] if spec.split else [text]
        for text in texts:
            if not text:
                self.drops["empty"] += 1
            elif text in absent:
                self.drops["absent"] += 1
            elif (name, text) in pairs:
                self.drops["duplicate_triple"] += 1
            else:
                pairs[(name, text)] = None

    def _property_name(self, name: Any) -> str | None:
        name = " ".join(str(name).split())
        name = self.mapping.rename.get(name, name)
        if not name:
            self.drops["empty_property"] += 1
            return None
        if name in self.excluded:
            self.drops["excluded_property"] += 1
            return None
        return name

    def _expand(self, pairs: dict, value: Any, spec: PropertySpec, absent: frozenset) -> None:
        if not isinstance(value, dict):
            self.drops["not_a_dict"] += 1
            return
        for key, sub in value.items():
            name = self._property_name(key)
            if name is not None:
                self._add(pairs, name, sub, spec, absent)

    def _knowledge(self, pairs: dict, value: Any, spec: PropertySpec, absent: frozenset) -> None:
        if not isinstance(value, str):
            raise RowRejected("malformed_knowledge", f"{spec.path!r} is a {type(value).__name__}, not text")
        if not value.strip():
            return
        for pair in value.split(spec.pair_separator):
            parts = pair.split(spec.kv_separator)
            if len(parts) != 2:
                raise RowRejected("malformed_knowledge", f"pair {pair!r} needs exactly one {spec.kv_separator!r}")
            if not parts[0].strip():
                raise RowRejected("malformed_knowledge", f"pair {pair!r} has no property")
            name = self._property_name(parts[0])
            if name is not None:
                self._add(pairs, name, parts[1], spec, absent)

    def _image_ref(self, record: dict, item_id: str) -> tuple[str | None, str | None]:
        """(reference, None), or (None, why there is none)."""
        image = self.mapping.image
        if image is None:
            return None, None
        if image.column is not None:
            value = lookup(record, image.column)
            if value is _MISSING or not isinstance(value, (str, int)):
                return None, None
            value = str(value).strip()
            return (value, None) if value and value not in self.absent else (None, None)

        def value_of(key: str):
            if key == "id":
                return item_id
            found = lookup(record, key)
            if found is _MISSING or found is None or isinstance(found, (dict, list)):
                return None
            text = normalize(found)
            return None if text is None or text in self.absent else text

        return self.template.fill(value_of)


def _check_encodable(item: Item) -> None:
    """JSON may carry lone surrogates (\\ud800); they cannot be written as UTF-8 later."""
    text = "\x1f".join([item.item_id, item.title or "", item.category or "", item.group or "", item.image_ref or ""]
                       + [p + "\x1f" + v for p, v in item.pairs])
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise RowRejected("invalid_utf8", str(exc)) from None


def is_remote(ref: str) -> bool:
    return bool(REMOTE.match(ref))
