"""Atomic file and folder writes, JSON helpers and file hashes, shared by every stage.

Readers (and a failed run) never see half a file or half a folder: everything is built beside its target and
renamed into place only once complete.  This module must stay free of torch (and other heavy imports): the
data stage uses it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError

_CHUNK = 1 << 20


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; it replaces ``path`` only if the block succeeds.

    The temporary file is always removed, so a failed block leaves an existing ``path`` untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        tmp_path.chmod(0o644)  # mkstemp makes 0600; outputs should be as readable as any other file DVC caches
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling folder; it replaces the folder ``path`` only if the block succeeds.

    The temporary folder is always removed, so a failed block leaves an existing ``path`` untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        tmp.chmod(0o755)  # mkdtemp makes 0700
        _swap_in(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _swap_in(tmp: Path, path: Path) -> None:
    """Rename ``tmp`` to ``path``, moving an existing ``path`` aside first so a failed rename can put it back."""
    if not os.path.lexists(path):
        os.replace(tmp, path)
        return
    # A fresh hidden holder folder gives the old target a unique name on the same filesystem.
    holder = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
    old = holder / path.name
    try:
        os.replace(path, old)
        try:
            os.replace(tmp, path)
        except BaseException:
            os.replace(old, path)
            raise
    except BaseException:
        if not os.path.lexists(old):  # never delete the only copy of the old target
            holder.rmdir()
        raise
    shutil.rmtree(holder, ignore_errors=True)


def write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` as UTF-8, atomically."""
    write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, payload: Any) -> None:
    """Write JSON with sorted keys (so identical runs give identical bytes), atomically."""
    write_text(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")


def read_json(path: Path, made_by: str) -> Any:
    """Load a JSON file; a missing file says which ``dvc repro`` target makes it."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path}: not found; it is made by `dvc repro {made_by}`")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise PipelineError(f"{path}: not valid JSON ({exc.msg}); rerun `dvc repro {made_by}`") from exc
    except UnicodeDecodeError as exc:
        raise PipelineError(f"{path}: not UTF-8 text, so not valid JSON; rerun `dvc repro {made_by}`") from exc


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks so big files don't sit in memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()
