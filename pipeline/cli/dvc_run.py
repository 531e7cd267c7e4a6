"""Running `dvc` from the pipeline's commands (study, fanout): this interpreter's venv first on PATH, since the stage
commands call `python` and DVC's queue workers call `dvc`."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from pipeline.errors import PipelineError


def dvc_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a `dvc` call: this venv's bin first on PATH, passive OpenMP waits (busy-waiting threads
    crawl on shared cores), plus ``extra``."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    env.update(extra or {})
    return env


def dvc(cwd: Path, *args: str, capture: bool = False, extra_env: Mapping[str, str] | None = None) -> str:
    """``dvc <args>`` in ``cwd``; its output passed through (``capture``: returned instead). A failure is one line."""
    result = subprocess.run(
        [sys.executable, "-m", "dvc", *args], cwd=cwd, env=dvc_env(extra_env), capture_output=capture, text=True
    )
    if result.returncode != 0:
        tail = (result.stderr or "").strip().splitlines()[-1:] if capture else "its output is above"
        raise PipelineError(f"dvc {' '.join(args)} failed in {cwd} ({tail})")
    return result.stdout if capture else ""


def ran_stages(output: str) -> list[str]:
    """The stages a `dvc repro` ran (not restored from the run-cache, not skipped), in order, from its output."""
    return [line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")]
