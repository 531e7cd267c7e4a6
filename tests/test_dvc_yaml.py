"""dvc.yaml stays true to the code: each stage depends on every library module it imports (by folder, so a change
reruns the stage) and on nothing the code does not import, and tracks exactly the params its flow reads."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.config.method_inputs import KNOBS
from pipeline.config.params import TRACKED
from pipeline.config.schema import METHODS

REPO = Path(__file__).resolve().parents[1]
PROBE = """
import importlib, sys
sys.path.insert(0, '.')
importlib.import_module(sys.argv[1])
for name, module in sorted(sys.modules.items()):
    if name.startswith(('pipeline', 'stages')) and getattr(module, '__file__', None):
        print(module.__file__)
"""
# dvc.yaml's names for a stage's own task: ${key} (data@, foreach over the tasks mapping), ${item} (source@),
# ${item.target} (adapt@, a matrix); TRACKED says {task}.
OWN_TASK = re.compile(r"\$\{(key|item|item\.target)\}")


def stage_definitions() -> dict[str, dict]:
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    return {name: stage.get("do", stage) for name, stage in stages.items()}


def output(entry: str | dict) -> tuple[str, dict]:
    """An outs/metrics/plots entry of dvc.yaml: its path and its options (none for a bare path)."""
    if isinstance(entry, str):
        return entry, {}
    path, options = next(iter(entry.items()))
    return path, options or {}


def stage_module(stage: dict) -> str:
    """``stages.adapt`` from ``python -m stages.adapt ${item.target} ...``."""
    python, flag, module, *_ = stage["cmd"].split()
    assert (python, flag) == ("python", "-m"), stage["cmd"]
    return module


def imported_files(module: str) -> set[str]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, module], cwd=REPO, capture_output=True, text=True, check=True, timeout=120
    )
    return {str(Path(line).resolve().relative_to(REPO)) for line in result.stdout.split()} - {"stages/__init__.py"}


def code_deps(stage: dict) -> list[str]:
    return [d for d in stage["deps"] if isinstance(d, str) and d.startswith(("pipeline", "stages/"))]


def covered(path: str, deps: list[str]) -> bool:
    return any(path == dep or path.startswith(dep.rstrip("/") + "/") for dep in deps)


@pytest.mark.parametrize("name", sorted(stage_definitions()))
def test_every_imported_module_is_a_dependency_and_every_dependency_is_imported(name):
    stage = stage_definitions()[name]
    deps, imported = code_deps(stage), imported_files(stage_module(stage))
    missing = sorted(path for path in imported if not covered(path, deps))
    assert missing == [], f"stage {name}: add to its deps in dvc.yaml: {missing}"
    unused = sorted(dep for dep in deps if not any(covered(path, [dep]) for path in imported))
    assert unused == [], f"stage {name}: drop from its deps in dvc.yaml (not imported): {unused}"


def test_training_stages_do_not_rerun_for_the_report_or_the_cli():
    for name in ("source", "distill", "adapt"):
        deps = code_deps(stage_definitions()[name])
        assert not [d for d in deps if d.startswith(("pipeline/report", "pipeline/cli/compare", "pipeline/cli/predict"))]
    report = code_deps(stage_definitions()["report"])
    assert not [d for d in report if d.startswith(("pipeline/training", "pipeline/model", "pipeline/methods"))]


@pytest.mark.parametrize("name", sorted(stage_definitions()))
def test_each_stage_tracks_exactly_the_params_its_flow_reads(name):
    tracked = [OWN_TASK.sub("{task}", key) for key in stage_definitions()[name]["params"]]
    assert sorted(tracked) == sorted(TRACKED[name])


def test_pycache_is_ignored_by_dvc():
    """Directory deps (pipeline/methods) must not hash __pycache__, or a fresh clone would look changed."""
    assert "__pycache__" in (REPO / ".dvcignore").read_text(encoding="utf-8")


def test_method_inputs_writes_a_file_for_every_method_and_each_adapt_stage_depends_on_its_own():
    """The matrix gives every adapt@ stage the same deps: its method's inputs file is its one upstream dependency
    (pipeline/config/method_inputs.py), so every registered method needs its row and its file."""
    assert tuple(KNOBS) == METHODS
    stages = stage_definitions()
    outs = [output(out)[0] for out in stages["method_inputs"]["outs"]]
    assert outs == [f"results/method_inputs/{method}.json" for method in METHODS]
    upstream = [d for d in stages["adapt"]["deps"] if d.startswith("results/")]
    assert upstream == ["results/method_inputs/${item.method}.json"]


@pytest.mark.parametrize("name", sorted(stage_definitions()))
def test_every_stage_can_be_saved_and_restored_by_the_run_cache(name):
    """DVC's run-cache skips a stage with a `persist: true` output or an uncached out, and `dvc push` never sends an
    uncached metric or plot, which another clone needs to restore the run: the fan-out and the multi-machine recipe
    rely on neither being there (README, Many runs at once)."""
    stage = stage_definitions()[name]
    for kind in ("outs", "metrics", "plots"):
        for entry in stage.get(kind, []):
            path, options = output(entry)
            assert not options.get("persist"), f"{name}: {path} is persist: true"
            assert options.get("cache", True), f"{name}: {path} is cache: false"
