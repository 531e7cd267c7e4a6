"""Stage ``backbone``: materialise the frozen LM once as safetensors + tokenizer under models/backbone."""

from __future__ import annotations

from pathlib import Path

from pipeline.config.schema import Params
from pipeline.layout import BACKBONE_DIR
from pipeline.model.materialise import materialise_backbone


def run(params: Params) -> str:
    """Materialise params ``backbone`` into models/backbone; return the summary line."""
    info = materialise_backbone(params.backbone, BACKBONE_DIR, Path.cwd())
    return f"{info.name} ({info.kind}, hidden {info.hidden_size}, vocab {info.vocab_size}) -> {BACKBONE_DIR}"
