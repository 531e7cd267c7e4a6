"""Stage ``backbone``: materialise the frozen LM once as safetensors + tokenizer under models/backbone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.config.load import section
from pipeline.layout import BACKBONE_DIR
from pipeline.model.materialise import materialise_backbone


def run(params: dict[str, Any]) -> str:
    """Materialise params ``backbone`` into models/backbone; return the summary line."""
    info = materialise_backbone(section(params, "backbone"), BACKBONE_DIR, Path.cwd())
    return f"{info.name} ({info.kind}, hidden {info.hidden_size}, vocab {info.vocab_size}) -> {BACKBONE_DIR}"
