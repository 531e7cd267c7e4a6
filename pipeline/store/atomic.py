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
from pipeline.store.interrupts import held_off
from pipeline.store.locks import artifacts_locked
from pipeline.store.room import OutOfRoom, room_reason

_CHUNK = 1 << 20


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; it replaces ``path`` only if the block succeeds.

    The temporary file is always removed, so a failed block leaves an existing ``path`` untouched. A write that
    finds no room (full disk, file-size limit) is an :class:`OutOfRoom` error naming ``path``.
    """
    path = Path(path)
    with _room_reported(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(handle)
    tmp_path = Path(tmp)
    try:
        with _room_reported(path):
            yield tmp_path
        tmp_path.chmod(0o644)  # mkstemp makes 0600; outputs should be as readable as any other file DVC caches
        with replacing(path):
            os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling folder; it replaces the folder ``path`` only if the block succeeds.

    The temporary folder is always removed, so a failed block leaves an existing ``path`` untouched. A write that
    finds no room is an :class:`OutOfRoom` error naming the file's place in ``path``.
    """
    path = Path(path)
    tmp = _temporary_dir(path)
    try:
        with _room_reported(path, written_in=tmp):
            yield tmp
        tmp.chmod(0o755)  # mkdtemp makes 0700
        with replacing(path):
            _swap_in(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def atomic_files(folder: Path) -> Iterator[Path]:
    """Yield a temporary sibling folder; each file written into it replaces its namesake in ``folder`` (the
    other files there stay) once the block succeeds, so a stage whose outputs are several files in one folder
    replaces all of them or none. Renames need no room, so a full disk stops the block before the first."""
    folder = Path(folder)
    tmp = _temporary_dir(folder)
    try:
        with _room_reported(folder, written_in=tmp):
            yield tmp
        folder.mkdir(exist_ok=True)
        with replacing(folder):
            for written in sorted(tmp.iterdir()):
                os.replace(written, folder / written.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _temporary_dir(path: Path) -> Path:
    """A new empty hidden sibling folder of ``path``, on its filesystem so that a rename moves it in place."""
    with _room_reported(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))


@contextmanager
def _room_reported(path: Path, written_in: Path | None = None) -> Iterator[None]:
    """A write in the block that finds no room becomes :class:`OutOfRoom` naming ``path``, or, for a file the
    block wrote inside the temporary folder ``written_in``, that file's place in ``path``."""
    try:
        yield
    except Exception as exc:
        reason = room_reason(exc)
        if reason is None:
            raise
        named = exc.path if isinstance(exc, OutOfRoom) else getattr(exc, "filename", None)
        inside = written_in is not None and named is not None and Path(named).is_relative_to(written_in)
        if isinstance(exc, OutOfRoom) and not inside:
            raise  # named already, and not a file of this folder
        raise OutOfRoom(path / Path(named).relative_to(written_in) if inside else path, reason) from exc


@contextmanager
def replacing(path: Path) -> Iterator[None]:
    """While ``path`` (a file or folder, or several files written in the block) is replaced: no reader loads
    artifacts of its pipeline folder (store/locks.py), and SIGTERM or Ctrl-C wait for the end of the block
    (store/interrupts.py), so the files of one run are all replaced or none. SIGKILL cannot wait: see _swap_in."""
    with artifacts_locked(Path(path).parent, exclusive=True), held_off():
        yield


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
