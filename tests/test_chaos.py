"""A reduced chaos run: SIGKILL, SIGTERM and Ctrl-C a training stage mid-training, rerun `dvc repro`, get the
uninterrupted bytes each time.

scripts/chaos.py's own ``main`` runs, in this process, on a copy of the session's tiny run instead of a repo it
builds from scratch: the backbone and data@ stages are done already, the rest rerun at the longer step budget.
The script's exit status covers the bytes, the temporaries and the resumes; the summary lines are checked too, so
that a run whose kills all came too late (none landed mid-training, nothing resumed) fails here.
"""

import importlib.util
import re
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "chaos.py"
SUMMARY = re.compile(
    r"(\d+) kills tried, (\d+) landed mid-training \((\d+) missed\), (\d+) reruns resumed from a checkpoint, "
    r"(\d+)/(\d+) reruns byte-identical, (\d+) temporaries left"
)


def load_script():
    spec = importlib.util.spec_from_file_location("chaos_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_stopped_stage_resumes_to_identical_artifacts_for_each_signal(tiny_run, monkeypatch, capsys):
    chaos = load_script()
    monkeypatch.setattr(chaos, "tiny_repo", tiny_run.copy)
    # 120 steps: training takes a couple of seconds, long enough to see two checkpoints and land in the next;
    # three tries at most per signal: a loaded machine may make a kill come too late, not three in a row.
    argv = ["--kills", "1", "--max-tries", "3", "--signals", "KILL", "TERM", "INT", "--stages", "distill",
            "--steps", "120", "--seed", "1"]
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), *argv])
    code = chaos.main()
    output = capsys.readouterr().out
    assert code == 0, output[-2000:]
    lines = {line.split(":")[0]: line for line in output.splitlines() if line.startswith("chaos")}
    assert set(lines) == {"chaos SIGKILL", "chaos SIGTERM", "chaos SIGINT", "chaos"}, output[-2000:]
    for name in ("SIGKILL", "SIGTERM", "SIGINT"):
        tried, landed, missed, resumed, equal, of, left = map(int, SUMMARY.search(lines[f"chaos {name}"]).groups())
        assert landed == 1 and missed == tried - 1 and resumed >= 1, lines[f"chaos {name}"]
        assert equal == of == tried, lines[f"chaos {name}"]
        if name != "SIGKILL":  # a handled stop removes its temporaries; SIGKILL cannot
            stopped = int(re.search(r"(\d+) stopped with the one-line message", lines[f"chaos {name}"]).group(1))
            assert left == 0 and stopped >= landed, lines[f"chaos {name}"]
    assert lines["chaos"].endswith("; 0 failed")
