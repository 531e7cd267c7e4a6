"""Tensor artifacts on disk: safetensors, written atomically, checked against what they were made for.

Each tensor file carries its metadata (backbone fingerprint, prompt shape, rank, data hashes) in the
safetensors header, so a file cannot be separated from what is needed to use it safely.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from pipeline.store.atomic import atomic_path
from pipeline.errors import PipelineError

META_KEY = "mpt_pipeline"


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

