"""A reduced chaos run: SIGKILL a training stage mid-way, rerun `dvc repro`, get the uninterrupted bytes."""

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "chaos.py"


def test_killed_stage_resumes_to_identical_artifacts():
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--kills", "1", "--stages", "distill", "--steps", "60", "--seed", "1"],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    summary = result.stdout.strip().splitlines()[-1]
    assert summary.startswith("chaos: 1 kills tried") and summary.endswith("1/1 reruns ended byte-identical")
