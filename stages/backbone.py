"""DVC stage `backbone`: materialise the frozen LM once as safetensors + tokenizer under models/backbone."""

import sys
from pathlib import Path

# Stages run as `python stages/<name>.py` from the repo root; make `import pipeline` work without installing.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.backbone import BACKBONE_DIR  # noqa: E402
from pipeline.backbone_source import materialise_backbone  # noqa: E402
from pipeline.params import section  # noqa: E402
from pipeline.schema import load_checked_params  # noqa: E402
from pipeline.stage import run_stage  # noqa: E402


def main(argv: list[str]) -> str:
    spec = section(load_checked_params(), "backbone")
    info = materialise_backbone(spec, BACKBONE_DIR, Path.cwd())
    return f"{info.name} ({info.kind}, hidden {info.hidden_size}, vocab {info.vocab_size}) -> {BACKBONE_DIR}"


if __name__ == "__main__":
    run_stage("backbone", main)
