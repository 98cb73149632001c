"""TOML text for the files edgemnv2 writes (device profiles, the static engine's stack table): the standard
library reads TOML but does not write it, and one writer keeps every written file in one style."""

from __future__ import annotations

import json
from typing import Any


def dump_toml(data: dict[str, Any]) -> str:
    """TOML for the value types the written files use (strings, numbers, booleans, lists and nested tables)."""
    lines: list[str] = []
    _dump_table(data, [], lines)
    return "\n".join(lines).lstrip("\n") + "\n"


def _dump_table(table: dict[str, Any], prefix: list[str], lines: list[str]) -> None:
    scalars = {k: v for k, v in table.items() if not isinstance(v, dict)}
    if prefix and (scalars or not table):
        lines.append(f"\n[{'.'.join(_key(p) for p in prefix)}]")
    lines.extend(f"{_key(k)} = {_value(v)}" for k, v in scalars.items())
    for key, value in table.items():
        if isinstance(value, dict):
            _dump_table(value, [*prefix, key], lines)


def _key(key: str) -> str:
    bare = key.replace("_", "").replace("-", "").isalnum() and key.isascii()
    return key if bare else json.dumps(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"no TOML for {type(value).__name__}")
