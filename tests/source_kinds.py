"""Sources of every kind holding given bytes, built in a test's tmp_path (a wheel is seeded in an isolated cache,
a Hub dataset is a local folder in the Hub layout, read offline): what the bad-input tables run each case through.
"""

from __future__ import annotations

import hashlib
import stat
import zipfile
from pathlib import Path
from typing import Any

import pytest

from pipeline.store.wheels import cache_dir


def seed_wheel(monkeypatch, tmp_path: Path, members: dict[str, bytes], links: tuple[str, ...] = ()) -> str:
    """A wheel of ``pkg==1.0`` holding ``members`` (and symbolic links named ``links``), in an isolated cache."""
    monkeypatch.setenv("MPT_CACHE_DIR", str(tmp_path / "cache"))
    folder = cache_dir() / "wheels" / "pkg-1.0"
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        for name in links:
            archive.writestr(symlink_entry(name), "/etc/passwd")
    return hashlib.sha256(wheel.read_bytes()).hexdigest()


def symlink_entry(name: str) -> zipfile.ZipInfo:
    entry = zipfile.ZipInfo(name)
    entry.external_attr = (stat.S_IFLNK | 0o777) << 16
    return entry


def package(digest: str, member: str, **extra: Any) -> dict[str, Any]:
    return {"kind": "package", "package": "pkg", "version": "1.0", "sha256": digest, "member": member, **extra}


def one_file(kind: str, tmp_path: Path, monkeypatch, name: str, data: bytes, **extra: Any) -> dict[str, Any]:
    """A source of kind ``file`` or ``package`` holding ``data`` under the name ``name``."""
    if kind == "file":
        (tmp_path / name).write_bytes(data)
        return {"kind": "file", "path": name, **extra}
    return package(seed_wheel(monkeypatch, tmp_path, {f"pkg/data/{name}": data}), f"pkg/data/{name}", **extra)


def folder_of(kind: str, tmp_path: Path, monkeypatch, files: dict[str, bytes], **extra: Any) -> dict[str, Any]:
    """A source of kind ``folder`` or a package folder holding ``files`` (label/name -> bytes)."""
    if kind == "folder":
        for rel, data in files.items():
            (tmp_path / "corpus" / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / "corpus" / rel).write_bytes(data)
        return {"kind": "folder", "path": "corpus", **extra}
    members = {f"pkg/data/corpus/{rel}": data for rel, data in files.items()}
    return package(seed_wheel(monkeypatch, tmp_path, members), "pkg/data/corpus/", format="folder", **extra)


def hub_dataset(tmp_path: Path, name: str, data: bytes) -> dict[str, Any]:
    """A ``hub`` source: a dataset folder whose train split is the file ``data/<name>``."""
    (tmp_path / "ds" / "data").mkdir(parents=True)
    (tmp_path / "ds" / "data" / name).write_bytes(data)
    return {"kind": "hub", "dataset": str(tmp_path / "ds"), "split": "train"}


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No network, and a throwaway `datasets` cache (its location is read when datasets is imported)."""
    import datasets

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-datasets-cache")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
