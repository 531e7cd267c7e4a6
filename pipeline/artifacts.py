"""Artifacts on disk: safetensors + JSON only, written atomically, checked against what they were made for.

Each tensor file carries its metadata (backbone fingerprint, prompt shape, rank, data hashes) in the
safetensors header, so a file cannot be separated from what is needed to use it safely.
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

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from pipeline.errors import PipelineError

META_KEY = "mpt_pipeline"


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; it replaces ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        tmp_path.chmod(0o644)  # mkstemp makes 0600; artifacts are meant to be shared
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling folder; it replaces the folder ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        tmp.chmod(0o755)  # mkdtemp makes 0700
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_json(path: Path, payload: Any) -> None:
    """Write JSON with sorted keys (so identical runs give identical bytes), atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def read_json(path: Path, made_by: str) -> Any:
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path}: not found; it is made by `dvc repro {made_by}`")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise PipelineError(f"{path}: not valid JSON ({exc.msg})") from exc


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Save tensors as safetensors with ``meta`` (JSON) in the header, atomically."""
    contiguous = {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(contiguous, str(tmp), metadata={META_KEY: json.dumps(meta, sort_keys=True)})


def load_tensors(path: Path, made_by: str, expect: dict[str, Any] | None = None) -> tuple[dict[str, torch.Tensor], dict]:
    """Load a safetensors artifact and its metadata; refuse a corrupt file or a metadata mismatch.

    ``expect`` maps metadata keys to the values this use needs (e.g. the backbone fingerprint).
    """
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path}: not found; it is made by `dvc repro {made_by}`")
    try:
        tensors = load_file(str(path))
        with open(path, "rb") as handle:
            header_len = int.from_bytes(handle.read(8), "little")
            header = json.loads(handle.read(header_len))
        meta = json.loads(header.get("__metadata__", {}).get(META_KEY, "{}"))
    except (SafetensorError, OSError, ValueError) as exc:
        raise PipelineError(f"{path}: corrupt or truncated safetensors file ({exc})") from exc
    for key, wanted in (expect or {}).items():
        if meta.get(key) != wanted:
            raise PipelineError(
                f"{path}: made for {key}={meta.get(key)!r} but this run needs {wanted!r}; "
                f"rerun `dvc repro {made_by}`"
            )
    return tensors, meta


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
