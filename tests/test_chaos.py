"""A reduced chaos run: SIGKILL, SIGTERM and Ctrl-C a training stage mid-way, rerun `dvc repro`, get the
uninterrupted bytes each time.

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
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_stopped_stage_resumes_to_identical_artifacts_for_each_signal(tiny_run, monkeypatch, capsys):
    chaos = load_script()
    monkeypatch.setattr(chaos, "tiny_repo", tiny_run.copy)
    argv = ["--kills", "1", "--signals", "KILL", "TERM", "INT", "--stages", "distill", "--steps", "60", "--seed", "1"]
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), *argv])
    code = chaos.main()
    output = capsys.readouterr().out
    assert code == 0, output[-2000:]
    *_, kill, term, interrupt, summary = output.strip().splitlines()
    for line, name in [(kill, "SIGKILL"), (term, "SIGTERM"), (interrupt, "SIGINT")]:
        assert line.startswith(f"chaos {name}: 1 kills tried") and line.endswith("1/1 reruns ended byte-identical")
    assert summary.startswith("chaos: 3 kills tried") and summary.endswith("3/3 reruns ended byte-identical")
