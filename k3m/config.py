"""One base for every settings dataclass: the model's (K3MConfig), training's (TrainConfig)
and the evaluation's (EvaluationConfig).

A config is a plain value: nested dataclasses with explicit defaults. :meth:`Config.from_dict`
builds one from plain data (YAML/JSON) and checks it on the way in:

- an unknown key is an error naming its dotted path (``unknown config key(s) text.hiden_size``),
  and so is a key given twice in one file (YAML and JSON would keep the last silently; the
  YAML reader is the mappings' own, :mod:`etl.strict_yaml`);
- every value is checked against its field's annotation (``int``, ``float``, ``bool``, ``str``,
  ``Optional[...]``, ``list``, ``tuple[float, ...]``, ``dict``, nested configs), so
  ``--set max_steps=ten`` is ``max_steps: expected int, got 'ten'``, never a later crash.
  Numbers written the YAML 1.1 way (``2e-3`` is a string there) are read as floats;

``load(path, overrides)`` reads YAML or JSON with ``--set key=value`` overrides (values parsed
as YAML, dotted keys reach into sections), ``save``/``to_dict`` write it back, and
``from_preset(name, **overrides)`` starts from ``PRESET_DIR/<name>.yaml`` (presets are YAML
files only). Every error is a :class:`ConfigError` (a UserError, and a ValueError: the CLI's exit 2).
"""
from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, ClassVar, Optional, TypeVar

import yaml

from etl import strict_yaml
from etl.errors import UserError

C = TypeVar("C", bound="Config")


class ConfigError(UserError, ValueError):
    """A setting that is unknown, of the wrong type or out of range."""


@dataclasses.dataclass
class Config:
    """Base of the settings dataclasses (subclasses are ``@dataclass`` too)."""

    WHAT: ClassVar[str] = "config"  # how errors name this kind of config
    PRESET_DIR: ClassVar[Optional[Path]] = None  # where from_preset finds <name>.yaml

    # -- plain data -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any]) -> C:
        return _build(cls, data, cls.WHAT, "")

    # -- files ------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """YAML (``.yaml``/``.yml``) or JSON (anything else)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix in (".yaml", ".yml"):
            path.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))
        else:
            path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls: type[C], path: str | Path | None, overrides: list[str] | tuple = ()) -> C:
        """A YAML or JSON file (None: the defaults) with ``key=value`` overrides applied."""
        return cls.from_dict(apply_overrides(read_file(path) if path is not None else {}, list(overrides)))

    @classmethod
    def from_preset(cls: type[C], name: str, **overrides: Any) -> C:
        """``PRESET_DIR/<name>.yaml`` with nested overrides, e.g.
        ``K3MConfig.from_preset("tiny", image={"kind": "cnn"}, use_image=False)``."""
        if cls.PRESET_DIR is None:
            raise ConfigError(f"{cls.__name__} has no presets")
        path = cls.PRESET_DIR / f"{name}.yaml"
        if not path.is_file():
            known = sorted(p.stem for p in cls.PRESET_DIR.glob("*.yaml"))
            raise ConfigError(f"unknown preset {name!r}; known: {known}")
        data = merge(read_file(path), overrides)
        if "preset" in {f.name for f in dataclasses.fields(cls)}:
            data["preset"] = name
        return cls.from_dict(data)


def read_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no config file {path}")
    text = path.read_text()
    try:
        data = json.loads(text, object_pairs_hook=_unique_keys) if path.suffix == ".json" else strict_yaml.load(text)
    except strict_yaml.DuplicateKey as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except (ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings, got {type(data).__name__}")
    return data


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict:
    """JSON keeps the last of two equal keys silently too."""
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"{key}: given twice")
        out[key] = value
    return out


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``key=value`` / ``a.b.c=value`` assignments (values parsed as YAML) into a copy."""
    data = yaml.safe_load(yaml.safe_dump(_plain(data)))  # deep copy
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got {item!r}")
        *parents, leaf = key.strip().split(".")
        node = data
        for name in parents:
            node = node.setdefault(name, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: {name} is not a mapping")
        try:
            node[leaf] = strict_yaml.load(raw)
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {key}: not a YAML value: {exc}") from None
    return data


def merge(base: dict, override: dict) -> dict:
    """``override`` laid over ``base``, section by section."""
    out = dict(base)
    for key, value in override.items():
        if dataclasses.is_dataclass(value):
            value = dataclasses.asdict(value)
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


# -- building and checking ----------------------------------------------------------------
def _build(cls, data, what: str, where: str):
    if not isinstance(data, dict):
        raise ConfigError(f"{where.rstrip('.') or what}: expected a mapping, got {_shown(data)}")
    known = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"unknown {what} key(s) {', '.join(where + k for k in unknown)}")
    hints = typing.get_type_hints(cls)
    kwargs = {name: _check(hints[name], value, what, f"{where}{name}") for name, value in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:  # a subclass's own range checks (__post_init__)
        raise ConfigError(str(exc)) from None


def _check(annotation, value, what: str, key: str):
    """``value`` as ``annotation`` wants it, or a ConfigError naming ``key``."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors = []
        for option in options:
            try:
                return _check(option, value, what, key)
            except ConfigError as exc:
                errors.append(exc)
        if len(options) == 1:
            raise errors[0]
        raise ConfigError(f"{key}: expected {_name(annotation)}, got {_shown(value)}")
    if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
        if isinstance(value, annotation):
            return value
        return _build(annotation, value, what, key + ".")
    if annotation is Any:
        return value
    if annotation is bool:
        if isinstance(value, bool):
            return value
    elif annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "2e-3" as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif annotation is str:
        if isinstance(value, str):
            return value
    elif annotation in (list, dict, tuple) or origin in (list, dict, tuple):
        container = origin or annotation
        if container is tuple and isinstance(value, (list, tuple)):
            inner = args[0] if args else Any
            return tuple(_check(inner, v, what, f"{key}[{i}]") for i, v in enumerate(value))
        if container is list and isinstance(value, (list, tuple)):
            inner = args[0] if args else Any
            return [_check(inner, v, what, f"{key}[{i}]") for i, v in enumerate(value)]
        if container is dict and isinstance(value, dict):
            return value
    else:  # an annotation this checker does not know: take the value as it is
        return value
    raise ConfigError(f"{key}: expected {_name(annotation)}, got {_shown(value)}")


def _name(annotation) -> str:
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _shown(value) -> str:
    return repr(value) if isinstance(value, (str, int, float, bool)) or value is None else type(value).__name__


def _plain(value):
    """Tuples become lists (YAML and JSON write them alike)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
