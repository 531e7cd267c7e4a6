"""dvc.yaml lists, for every stage, each library module its script imports: a code change must rerun the stage."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PROBE = """
import importlib.util, sys
sys.path.insert(0, '.')
spec = importlib.util.spec_from_file_location('stage_under_test', sys.argv[1])
spec.loader.exec_module(importlib.util.module_from_spec(spec))
for name, module in sorted(sys.modules.items()):
    if name.startswith('pipeline') and getattr(module, '__file__', None):
        print(module.__file__)
"""


def stage_definitions() -> dict[str, dict]:
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    return {name: stage.get("do", stage) for name, stage in stages.items()}


def imported_modules(script: str) -> set[str]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, script], cwd=REPO, capture_output=True, text=True, check=True, timeout=120
    )
    return {str(Path(line).resolve().relative_to(REPO)) for line in result.stdout.split()}


@pytest.mark.parametrize("name", sorted(stage_definitions()))
def test_every_imported_module_is_a_dependency(name):
    stage = stage_definitions()[name]
    script = stage["cmd"].split()[1]
    deps = [d for d in stage["deps"] if isinstance(d, str) and "${" not in d]
    assert script in deps

    def covered(path: str) -> bool:
        return any(path == dep or path.startswith(dep.rstrip("/") + "/") for dep in deps)

    missing = sorted(path for path in imported_modules(script) if not covered(path))
    assert missing == [], f"stage {name}: add to its deps in dvc.yaml: {missing}"


def test_pycache_is_ignored_by_dvc():
    """Directory deps (pipeline/methods) must not hash __pycache__, or a fresh clone would look changed."""
    assert "__pycache__" in (REPO / ".dvcignore").read_text(encoding="utf-8")


def test_adapt_logs_exactly_the_params_it_tracks():
    sys.path.insert(0, str(REPO / "stages"))
    try:
        import adapt  # noqa: PLC0415 (the stage script as a module)
    finally:
        sys.path.pop(0)
    tracked = [p for p in stage_definitions()["adapt"]["params"] if "${" not in p]
    assert sorted(adapt.PARAMS) == sorted(tracked)
