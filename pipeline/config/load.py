"""Reading params.yaml (a key given twice is refused) and small typed accessors with key-path errors (validating
it: pipeline/config/schema.py)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import PipelineError

PARAMS_FILE = Path("params.yaml")


def section(params: dict[str, Any], key_path: str, where: str = "params.yaml") -> Any:
    """Return ``params[a][b]...`` for ``key_path`` "a.b"; a missing key is a PipelineError naming the path.

    ``where`` names the file in the message (another JSON or YAML file read the same way).
    """
    node: Any = params
    walked = []
    for part in key_path.split("."):
        walked.append(part)
        if not isinstance(node, dict) or part not in node:
            raise PipelineError(f"{where}: missing key {'.'.join(walked)}")
        node = node[part]
    return node


def require(mapping: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    """Fetch ``mapping[key]`` checking its type; errors name ``where.key``."""
    if key not in mapping:
        raise PipelineError(f"params.yaml: missing key {where}.{key}")
    value = mapping[key]
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise PipelineError(f"params.yaml: {where}.{key} must be {_kind_name(kind)}, got {value!r}")
    if not isinstance(value, kind):
        raise PipelineError(f"params.yaml: {where}.{key} must be {_kind_name(kind)}, got {value!r}")
    return value


def positive(mapping: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    """Like :func:`require` for a number that must be > 0."""
    value = require(mapping, key, kind, where)
    if value <= 0:
        raise PipelineError(f"params.yaml: {where}.{key} must be > 0, got {value!r}")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def optional(mapping: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str, default: Any = None) -> Any:
    """Like :func:`require`, but a missing key gives ``default``."""
    return require(mapping, key, kind, where) if key in mapping else default


def check_keys(mapping: dict[str, Any], allowed: Iterable[str], where: str) -> None:
    """Reject keys of ``mapping`` outside ``allowed`` (typos would otherwise be silently ignored)."""
    allowed = list(allowed)
    unknown = [str(key) for key in mapping if key not in allowed]
    if unknown:
        raise PipelineError(
            f"params.yaml: unknown key {where}.{unknown[0]}; allowed keys under {where}: {', '.join(allowed)}"
        )


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses a key given twice (plain YAML keeps the last one silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise PipelineError(
                    f"params.yaml: line {key_node.start_mark.line + 1}: key {key!r} is given twice; names must be unique"
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_params(path: str | Path = PARAMS_FILE) -> dict[str, Any]:
    """Read params.yaml with duplicate keys refused (not yet validated)."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path}: params file not found")
    try:
        params = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # noqa: S506 (safe loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise PipelineError(f"{path}: not valid YAML{where}") from None
    if not isinstance(params, dict):
        raise PipelineError(f"{path}: expected a mapping at the top level")
    return params
