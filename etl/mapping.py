"""The declarative mapping: where a catalog's id, title, label, properties and images come from.

A mapping is a YAML file (or a built-in name: ``k3m-tsv``, ``fashion44k``, see
``etl/mappings/``). :func:`load_mapping` validates it completely before any row is read;
every problem raises :class:`MappingError` naming the file and the key at fault. The format
is documented for users in ``docs/etl.md``.
"""
from __future__ import annotations

import difflib
import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from etl import strict_yaml
from etl.errors import UserError
from etl.image_template import ImageTemplate, TemplateError

BUILTIN_DIR = Path(__file__).resolve().parent / "mappings"
FORMATS = ("tsv", "jsonl", "csv", "parquet")
TOP_KEYS = (
    "name", "description", "format", "columns", "delimiter", "id", "title", "category",
    "group", "absent", "properties", "exclude", "rename", "image", "not_leakage",
)
PROPERTY_KEYS = ("column", "columns", "expand", "pairs", "as", "split", "absent", "pair_separator", "kv_separator")
IMAGE_KEYS = ("archive", "dir", "path", "column")


class MappingError(UserError, ValueError):
    """A mapping file is invalid; the message names the file and the key."""


@dataclass(frozen=True)
class PropertySpec:
    """One entry of ``properties``.

    kind ``column``: the value at ``path`` is one property named ``name``.
    kind ``expand``: the dict at ``path`` gives one property per key.
    kind ``pairs``: the string at ``path`` is ``p<kv>v<pair>p<kv>v`` (K3M knowledge text).
    """

    kind: str
    path: str
    name: str | None = None
    split: str | None = None
    absent: tuple[str, ...] | None = None  # None: the mapping-wide ``absent``
    pair_separator: str = "#;#"
    kv_separator: str = "#:#"


@dataclass(frozen=True)
class ImageSpec:
    """Where an item's image comes from: a root (zip ``archive`` or ``dir``; relative roots
    resolve against each source file's directory) and a ``path`` template or a ``column``."""

    archive: str | None = None
    dir: str | None = None
    path: str | None = None
    column: str | None = None


@dataclass(frozen=True)
class Mapping:
    name: str
    origin: str  # the file it came from
    sha256: str  # of that file's bytes
    id: str
    format: str | None = None  # None: guessed from each source's extension
    columns: tuple[str, ...] | None = None  # field names of a header-less tsv/csv
    delimiter: str | None = None  # None: tab for tsv, comma for csv
    title: str | None = None
    category: str | None = None
    group: str | None = None  # "title" (normalised title) or a path; None: the item id
    absent: tuple[str, ...] = ("",)
    properties: tuple[PropertySpec, ...] = ()
    exclude: tuple[str, ...] = ()
    rename: dict[str, str] = field(default_factory=dict)
    image: ImageSpec | None = None
    description: str | None = None
    not_leakage: tuple[str, ...] = ()  # properties reviewed: predictive of the category, but real attributes

    def to_dict(self) -> dict[str, Any]:
        """The resolved mapping, as recorded in the build manifest."""
        return asdict(self)

    def field_uses(self) -> list[tuple[str, str]]:
        """(mapping key, field path) for every field the mapping reads."""
        uses = [("id", self.id)]
        uses += [(key, getattr(self, key)) for key in ("title", "category") if getattr(self, key) is not None]
        if self.group not in (None, "title"):
            uses.append(("group", self.group))
        uses += [(f"properties[{i}]", spec.path) for i, spec in enumerate(self.properties)]
        if self.image is not None and self.image.column is not None:
            uses.append(("image.column", self.image.column))
        if self.image is not None and self.image.path is not None:
            uses += [("image.path", f) for f in ImageTemplate.parse(self.image.path).fields]
        return uses

    def check_columns(self, names: list[str], source: str, nested: bool = False) -> None:
        """Every field the mapping reads must be a column of ``source`` (its header, or its
        schema for Parquet, where ``nested`` lets a dotted path start at a struct column).
        A misspelt column would otherwise give every row the same silent hole."""
        available = set(names)
        for key, path in self.field_uses():
            if path in available or (nested and path.split(".")[0] in available):
                continue
            close = difflib.get_close_matches(path, names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise MappingError(f"{self.origin}: {key}: {path!r} is not a column of {source}{hint}; "
                               f"its columns are {', '.join(map(repr, names))}")


def builtin_mappings() -> list[str]:
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml"))


def load_mapping(name_or_path: str | Path) -> Mapping:
    """A built-in mapping by name, or a YAML mapping file."""
    path = Path(name_or_path)
    if not path.is_file():
        builtin = BUILTIN_DIR / f"{name_or_path}.yaml"
        if not builtin.is_file():
            raise MappingError(
                f"{name_or_path}: no such mapping file, and not a built-in mapping "
                f"(built-in: {', '.join(builtin_mappings())})"
            )
        path = builtin
    raw = path.read_bytes()
    try:
        data = strict_yaml.load(raw)
    except strict_yaml.DuplicateKey as exc:
        raise MappingError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or exc
        raise MappingError(f"{path}: not valid YAML{where}: {problem}") from None
    return parse_mapping(data, origin=str(path), sha256=hashlib.sha256(raw).hexdigest())


def parse_mapping(data: Any, origin: str, sha256: str = "") -> Mapping:
    """Validate a mapping already parsed from YAML (a dict)."""
    err = _Errors(origin)
    if not isinstance(data, dict):
        err.fail("(top level)", f"must be a mapping of keys, got {type(data).__name__}")
    err.unknown_keys(data, TOP_KEYS, "")

    fmt = data.get("format")
    if fmt is not None and fmt not in FORMATS:
        err.fail("format", f"must be one of {', '.join(FORMATS)}, got {fmt!r}")
    columns = data.get("columns")
    if columns is not None:
        columns = tuple(err.string_list(columns, "columns"))
        if len(set(columns)) != len(columns):
            err.fail("columns", "names must be unique")
    if fmt == "parquet" and columns is not None:
        err.fail("columns", "parquet files name their own columns")
    delimiter = data.get("delimiter")
    if delimiter is not None and (not isinstance(delimiter, str) or len(delimiter) != 1):
        err.fail("delimiter", f"must be a single character, got {delimiter!r}")

    if "id" not in data:
        err.fail("id", "is required: the field that holds each item's unique id")
    item_id = err.path(data["id"], "id")
    title = err.path(data["title"], "title") if data.get("title") is not None else None
    category = err.path(data["category"], "category") if data.get("category") is not None else None
    group = err.path(data["group"], "group") if data.get("group") is not None else None
    if group == "title" and title is None:
        err.fail("group", "'title' needs a title field")

    absent = tuple(err.string_list(data.get("absent", [""]), "absent"))
    exclude = tuple(err.string_list(data.get("exclude", []), "exclude"))
    not_leakage = tuple(err.string_list(data.get("not_leakage", []), "not_leakage"))
    rename = data.get("rename") or {}
    if not isinstance(rename, dict) or not all(isinstance(k, str) and isinstance(v, str) and v.strip() for k, v in rename.items()):
        err.fail("rename", "must map property names to non-empty new names")

    raw_props = data.get("properties", [])
    if not isinstance(raw_props, list):
        err.fail("properties", f"must be a list, got {type(raw_props).__name__}")
    properties: list[PropertySpec] = []
    excluded = set(exclude)
    for i, entry in enumerate(raw_props):
        for spec in _property_specs(entry, f"properties[{i}]", err):
            named = rename.get(spec.name, spec.name) if spec.name else None
            if spec.path.split(".")[0] in excluded or spec.path in excluded or named in excluded:
                err.fail(f"properties[{i}]", f"{spec.path!r} is listed in exclude (label leakage)")
            if category is not None and spec.path == category:
                err.fail(f"properties[{i}]", f"{spec.path!r} is the category label; as a property it would leak the label")
            properties.append(spec)

    image = _image_spec(data["image"], err) if data.get("image") is not None else None
    name = data.get("name") or Path(origin).stem
    mapping = Mapping(
        name=str(name), origin=origin, sha256=sha256, id=item_id, format=fmt, columns=columns,
        delimiter=delimiter, title=title, category=category, group=group, absent=absent,
        properties=tuple(properties), exclude=exclude, rename=dict(rename), image=image,
        description=data.get("description"), not_leakage=not_leakage,
    )
    if columns is not None:
        for key, path in mapping.field_uses():
            if path not in columns:
                err.fail("columns", f"{path!r} is used ({key}) but is not one of the columns {list(columns)}")
    return mapping


def _property_specs(entry: Any, where: str, err: "_Errors") -> list[PropertySpec]:
    if isinstance(entry, str):
        entry = {"expand": entry[:-2]} if entry.endswith(".*") else {"column": entry}
    if not isinstance(entry, dict):
        err.fail(where, f"must be a field path or a mapping, got {type(entry).__name__}")
    err.unknown_keys(entry, PROPERTY_KEYS, where + ".")
    sources = [k for k in ("column", "columns", "expand", "pairs") if k in entry]
    if len(sources) != 1:
        err.fail(where, "needs exactly one of column, columns, expand, pairs")
    kind = sources[0]
    split = entry.get("split")
    if split is not None and (not isinstance(split, str) or not split):
        err.fail(f"{where}.split", "must be a non-empty separator string")
    absent = tuple(err.string_list(entry["absent"], f"{where}.absent")) if "absent" in entry else None
    name = entry.get("as")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        err.fail(f"{where}.as", "must be a non-empty property name")
    if name is not None and kind in ("expand", "pairs"):
        err.fail(f"{where}.as", f"{kind} takes property names from the data; use the top-level rename")
    for key in ("pair_separator", "kv_separator"):
        if key in entry:
            if kind != "pairs":
                err.fail(f"{where}.{key}", "only applies to pairs")
            if not isinstance(entry[key], str) or not entry[key]:
                err.fail(f"{where}.{key}", "must be a non-empty string")
    common = dict(split=split, absent=absent)

    if kind == "columns":
        paths = err.string_list(entry["columns"], f"{where}.columns")
        if not paths:
            err.fail(f"{where}.columns", "must list at least one field")
        return [PropertySpec("column", err.path(p, f"{where}.columns"), name or p, **common) for p in paths]
    path = err.path(entry[kind], f"{where}.{kind}")
    if kind == "column":
        if path.endswith(".*"):
            err.fail(f"{where}.column", "ends with .* ; use expand for a dict of properties")
        return [PropertySpec("column", path, name or path, **common)]
    if kind == "expand":
        return [PropertySpec("expand", path, **common)]
    return [PropertySpec(
        "pairs", path, **common,
        pair_separator=entry.get("pair_separator", "#;#"), kv_separator=entry.get("kv_separator", "#:#"),
    )]


def _image_spec(entry: Any, err: "_Errors") -> ImageSpec:
    if not isinstance(entry, dict):
        err.fail("image", f"must be a mapping (archive|dir, path|column), got {type(entry).__name__}")
    err.unknown_keys(entry, IMAGE_KEYS, "image.")
    for key in IMAGE_KEYS:
        if key in entry and (not isinstance(entry[key], str) or not entry[key].strip()):
            err.fail(f"image.{key}", "must be a non-empty string")
    if "archive" in entry and "dir" in entry:
        err.fail("image", "give either archive (a zip) or dir, not both")
    if ("path" in entry) == ("column" in entry):
        err.fail("image", "needs exactly one of path (a template like images/{id}.jpg) or column")
    if "path" in entry and "archive" not in entry and "dir" not in entry:
        err.fail("image.path", "a path template needs an archive or a dir to look in")
    if "path" in entry:
        try:
            ImageTemplate.parse(entry["path"])
        except TemplateError as exc:
            err.fail("image.path", str(exc))
    return ImageSpec(**{k: entry.get(k) for k in IMAGE_KEYS})


class _Errors:
    def __init__(self, origin: str):
        self.origin = origin

    def fail(self, key: str, problem: str):
        raise MappingError(f"{self.origin}: {key}: {problem}")

    def unknown_keys(self, data: dict, allowed: tuple[str, ...], prefix: str):
        for key in data:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else f" (allowed: {', '.join(allowed)})"
                self.fail(f"{prefix}{key}", f"unknown key{hint}")

    def path(self, value: Any, key: str) -> str:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or not value.strip():
            self.fail(key, f"must be a field name or dotted path, got {value!r}")
        if any(not part for part in value.split(".")):
            self.fail(key, f"{value!r} has an empty path segment")
        return value

    def string_list(self, value: Any, key: str) -> list[str]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in value):
            self.fail(key, f"must be a list of strings, got {value!r}")
        return [str(v) for v in value]
