"""One readers-writer lock per pipeline folder, so that no reader sees an artifact while a stage replaces it.

A stage replaces its outputs by renames (store/atomic.py): one for a file, two for a folder, and several files for
a source@ or distill run. `python -m pipeline predict|export`, started beside a `dvc repro` in the same folder,
reads a run folder, the backbone and a task's info one file after the other. So writers hold the exclusive side
of ``.locks/artifacts.lock`` (under the folder holding dvc.yaml) while they swap outputs in, which takes
milliseconds, and readers hold the shared side while they load; a reader thus gets each artifact whole, either
before or after a stage replaced it. Two writers of one artifact (a stage run by hand beside `dvc repro`, two
exports to one folder) take turns instead of interleaving their renames. DVC's own lock already refuses a
second `dvc repro`.

``flock`` locks vanish with the process that held them, so a killed stage never leaves a stale lock behind.
Paths outside any pipeline folder (a run folder copied elsewhere, a test's scratch folder) are not locked.
"""

from __future__ import annotations

import fcntl
import os
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import PipelineError

LOCK_FILE = Path(".locks") / "artifacts.lock"  # relative to the pipeline folder
PIPELINE_FILE = "dvc.yaml"  # what marks a pipeline folder
WAIT_SECONDS = 120.0  # writers hold the lock for a swap (milliseconds), readers while loading (seconds)
_POLL_SECONDS = 0.1


@dataclass
class _Held:
    fd: int
    exclusive: bool
    depth: int


_held: dict[Path, _Held] = {}  # this process's locks: a flock taken twice through two descriptors would block itself


def pipeline_folder(path: Path) -> Path | None:
    """The nearest folder at or above ``path`` that holds a dvc.yaml, or None."""
    for folder in (Path(path).resolve(), *Path(path).resolve().parents):
        if (folder / PIPELINE_FILE).is_file():
            return folder
    return None


@contextmanager
def artifacts_locked(*paths: Path, exclusive: bool, wait_s: float | None = None) -> Iterator[None]:
    """Hold the lock of each pipeline folder that ``paths`` lie in: ``exclusive`` to replace artifacts, shared to
    read them. Waits up to ``wait_s`` seconds (default WAIT_SECONDS; saying so on stderr), then refuses with one
    line."""
    wait_s = WAIT_SECONDS if wait_s is None else wait_s
    folders = sorted({folder for path in paths if (folder := pipeline_folder(path)) is not None})
    with ExitStack() as stack:
        for folder in folders:  # sorted: two processes locking the same folders never wait on each other in a cycle
            stack.enter_context(_folder_locked(folder, exclusive, wait_s))
        yield


@contextmanager
def _folder_locked(folder: Path, exclusive: bool, wait_s: float) -> Iterator[None]:
    lock = folder / LOCK_FILE
    held = _held.get(lock)
    if held is not None:
        if exclusive and not held.exclusive:
            raise RuntimeError(f"{lock}: held shared by this process; release it before replacing artifacts")
        held.depth += 1
        try:
            yield
        finally:
            held.depth -= 1
        return
    try:
        lock.parent.mkdir(exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:  # a read-only or full disk: nobody can be replacing artifacts there, or the write fails anyway
        yield
        return
    try:
        _acquire(fd, lock, exclusive, wait_s)
        _held[lock] = _Held(fd, exclusive, 1)
        try:
            yield
        finally:
            del _held[lock]
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def _acquire(fd: int, lock: Path, exclusive: bool, wait_s: float) -> None:
    mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
    deadline, told = time.monotonic() + wait_s, False
    while True:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        other = "reading artifacts (predict, export)" if exclusive else "replacing artifacts (a running stage)"
        if time.monotonic() >= deadline:
            raise PipelineError(f"{lock}: another process is {other} for over {wait_s:g} s; try again when it is done")
        if not told:
            print(f"waiting: {lock}: another process is {other}", file=sys.stderr, flush=True)
            told = True
        time.sleep(_POLL_SECONDS)
