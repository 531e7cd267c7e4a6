"""A reduced chaos run: SIGKILL a training stage mid-way, rerun `dvc repro`, get the uninterrupted bytes.

scripts/chaos.py's own ``main`` runs, in this process, on a copy of the session's tiny run instead of a repo it
builds from scratch: the backbone and data@ stages are done already, the rest rerun at the longer step budget.
"""

import importlib.util
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "chaos.py"


def load_script():
    spec = importlib.util.spec_from_file_location("chaos_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_killed_stage_resumes_to_identical_artifacts(tiny_run, monkeypatch, capsys):
    chaos = load_script()
    monkeypatch.setattr(chaos, "tiny_repo", tiny_run.copy)
    argv = ["--kills", "1", "--stages", "distill", "--steps", "60", "--seed", "1"]
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), *argv])
    code = chaos.main()
    output = capsys.readouterr().out
    assert code == 0, output[-2000:]
    summary = output.strip().splitlines()[-1]
    assert summary.startswith("chaos: 1 kills tried") and summary.endswith("1/1 reruns ended byte-identical")
