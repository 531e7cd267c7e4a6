"""Stage ``method_inputs``: per target method, ``results/method_inputs/<method>.json`` with what its adapt@ runs
read besides the shared params: its own params and the sha256 of each upstream file it starts from.

Each adapt@ stage depends on its own method's file (pipeline/config/method_inputs.py says why), so the file must
change exactly when one of those inputs does: it holds values and hashes only, never wall time or paths of this
machine. Torch-free and quick: hashing P and the source prompts takes milliseconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.config.method_inputs import DISTILLED, KNOBS, SOURCE_PROMPTS, UPSTREAM
from pipeline.config.schema import METHODS, Params
from pipeline.errors import PipelineError
from pipeline.layout import DISTILL_FILE, METHOD_INPUTS_DIR, method_inputs_file, source_dir
from pipeline.store.atomic import sha256_file, write_json
from pipeline.store.tracking import read_sections


def run(params: Params) -> str:
    """Write every method's inputs file (all of METHODS, as dvc.yaml lists them); return the summary line."""
    for method in METHODS:
        write_json(method_inputs_file(method), inputs_of(params, method))
    return f"what each of {len(METHODS)} target methods reads upstream -> {METHOD_INPUTS_DIR}/<method>.json"


def inputs_of(params: Params, method: str) -> dict[str, Any]:
    """``method``'s own params (as params.yaml gives them) and ``{path: sha256}`` of the upstream files it reads."""
    own = read_sections(params.raw, KNOBS[method])
    return {"method": method, "params": own, "reads": _hashes(upstream_files(params, method))}


def upstream_files(params: Params, method: str) -> list[tuple[Path, str]]:
    """The files ``method`` starts from, in the order it reads them, each with the stage that makes it."""
    kind = UPSTREAM.get(method)
    if kind == DISTILLED:
        return [(DISTILL_FILE, "distill")]
    if kind == SOURCE_PROMPTS:  # in source_tasks order: attempt stacks them so, spot breaks ties so
        return [(source_dir(name) / "prompt.safetensors", f"source@{name}") for name in params.source_tasks]
    return []


def _hashes(files: list[tuple[Path, str]]) -> dict[str, str]:
    hashes = {}
    for path, made_by in files:
        if not path.is_file():
            raise PipelineError(f"{path}: not found; it is made by `dvc repro {made_by}`")
        hashes[path.as_posix()] = sha256_file(path)
    return hashes
