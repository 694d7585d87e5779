"""Query parameters from the command line: ``--param k=v`` (string) and ``--param-json k=JSON``.

Shared by `k3m kg cypher` and the `k3m query` scripts. Parameters are the only way user
values reach a query.
"""
from __future__ import annotations

import json

from etl.errors import InvalidValue


def add_param_arguments(parser) -> None:
    parser.add_argument("--param", action="append", default=[], metavar="K=V", help="string parameter $K (repeatable)")
    parser.add_argument("--param-json", action="append", default=[], metavar="K=JSON",
                        help="typed parameter $K as JSON, e.g. k=10 or ids='[\"1\",\"2\"]' (repeatable)")


def parse_params(strings: list[str], typed: list[str]) -> dict:
    params: dict = {}
    for spec in strings:
        key, value = _split(spec)
        params[key] = value
    for spec in typed:
        key, value = _split(spec)
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError as exc:
            raise InvalidValue(f"--param-json {key}: not JSON ({exc.msg})") from None
    return params


def _split(spec: str) -> tuple[str, str]:
    key, sep, value = spec.partition("=")
    if not sep or not key.isidentifier():
        raise InvalidValue(f"parameter {spec!r} is not NAME=VALUE")
    return key, value
