"""Image path templates: ``images/{id[:3]}/{id}.jpg``, ``{gender}/{id:0>10}.jpg``.

A placeholder is ``{FIELD}``, ``{FIELD[START:STOP]}`` (a Python slice of the field's text,
for sharded layouts whose directory is the first characters of the id) or either of them
followed by ``:SPEC`` (a Python format spec: ``{id:0>10}`` pads to 10 characters; integer
specs such as ``{id:010d}`` apply to integral values). ``FIELD`` is ``id`` (the item id) or a
field path of the record. Placeholders are parsed when the mapping is checked, so a
malformed one is a mapping error, never an empty string in every path.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

from etl.errors import UserError

PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_PART = re.compile(r"^(?P<field>[^\[\]:]+)(?:\[(?P<start>-?\d*):(?P<stop>-?\d*)\])?(?::(?P<spec>.*))?$", re.S)
_INTEGER_TYPES = set("bcdoxXn")


class TemplateError(UserError, ValueError):
    """A placeholder that cannot be parsed; the message says which and why."""


@dataclass(frozen=True)
class Placeholder:
    text: str  # as written, without braces
    field: str
    start: int | None = None
    stop: int | None = None
    spec: str | None = None

    def render(self, value: Any) -> str:
        """The field value as it goes into the path; ValueError when the spec cannot apply."""
        text = str(value)
        if self.start is not None or self.stop is not None:
            text = text[self.start:self.stop]
        if not self.spec:
            return text
        if self.spec[-1] in _INTEGER_TYPES:
            try:
                return format(int(text), self.spec)
            except ValueError:
                raise ValueError(f"{{{self.text}}} needs an integer, got {text!r}") from None
        return format(text, self.spec)


@dataclass(frozen=True)
class ImageTemplate:
    text: str
    placeholders: tuple[Placeholder, ...]

    @classmethod
    def parse(cls, text: str) -> "ImageTemplate":
        found = []
        for inner in PLACEHOLDER.findall(text):
            found.append(_parse_placeholder(inner))
        rest = PLACEHOLDER.sub("", text)
        if "{" in rest or "}" in rest:
            raise TemplateError(f"unbalanced brace in {text!r}")
        return cls(text, tuple(found))

    @property
    def fields(self) -> list[str]:
        """Field paths the template reads (``id`` is the item id, not a field)."""
        return [p.field for p in self.placeholders if p.field != "id"]

    def fill(self, value_of: Callable[[str], Any]) -> tuple[str | None, str | None]:
        """(path, None), or (None, reason) when a field is missing/empty or its value does
        not fit the placeholder. ``value_of(field)`` returns None for a missing field."""
        values = iter(self.placeholders)

        def substitute(match: re.Match) -> str:
            placeholder = next(values)
            value = value_of(placeholder.field)
            if value is None or str(value).strip() == "":
                raise _Unfilled("template_field_missing")
            try:
                rendered = placeholder.render(value)
            except ValueError:
                raise _Unfilled("template_value_mismatch") from None
            if not rendered:
                raise _Unfilled("template_field_missing")
            return rendered

        try:
            return PLACEHOLDER.sub(substitute, self.text), None
        except _Unfilled as exc:
            return None, exc.reason


class _Unfilled(Exception):
    def __init__(self, reason: str):
        self.reason = reason


def _parse_placeholder(inner: str) -> Placeholder:
    if not inner.strip():
        raise TemplateError("empty placeholder {}")
    match = _PART.match(inner)
    if match is None:
        raise TemplateError(f"{{{inner}}} is not FIELD, FIELD[START:STOP] or FIELD:SPEC")
    field = match["field"].strip()
    if any(not part for part in field.split(".")):
        raise TemplateError(f"{{{inner}}}: {field!r} has an empty path segment")
    start = int(match["start"]) if match["start"] not in (None, "") else None
    stop = int(match["stop"]) if match["stop"] not in (None, "") else None
    spec = match["spec"]
    placeholder = Placeholder(inner, field, start, stop, spec or None)
    if spec:
        try:  # a spec is valid if it formats either a text or an integral value
            placeholder.render("1234567890")
        except ValueError as exc:
            raise TemplateError(f"{{{inner}}}: bad format spec {spec!r} ({exc})") from None
    return placeholder
