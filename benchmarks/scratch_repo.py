"""Scratch git + DVC copies of this project, for benchmarks and tests that run `dvc` end to end.

Built with the helpers of tests/test_end_to_end.py (``make_repo``, the tiny csv tasks, the tiny backbone), so
the scratch repos are the e2e test's setup: ``tiny_repo`` is its tiny run, ``default_repo`` the same copy with
the project's own params.yaml (the default run).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
for _path in (REPO, REPO / "tests"):  # tests/tiny.py imports `pipeline`
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from test_end_to_end import BINARY, git, make_repo, ran_stages, task_spec, write_task_csv  # noqa: E402
from tiny import save_tiny_backbone  # noqa: E402

__all__ = [
    "add_target", "default_repo", "dvc", "git", "pending_stages", "ran_stages", "repo_with_backbone", "run", "stage_env",
    "tiny_repo", "tiny_target",
]


def dvc(repo: Path, *args: str, threads: int | None = 1, timeout: float | None = None) -> subprocess.CompletedProcess:
    """``dvc <args>`` in ``repo`` with this interpreter's venv first on PATH (stage commands call `python`).

    ``threads`` sets OMP_NUM_THREADS for the stages (None: torch's default, as `make repro` runs them).
    A failure raises with the tail of its output.
    """
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.update(DVC_NO_ANALYTICS="1", OMP_WAIT_POLICY="PASSIVE", TOKENIZERS_PARALLELISM="false")
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    result = subprocess.run(
        [sys.executable, "-m", "dvc", *args], cwd=repo, env=env, capture_output=True, text=True, timeout=timeout
    )
    if result.returncode != 0:
        raise RuntimeError(f"dvc {' '.join(args)} failed in {repo}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def read_params(repo: Path) -> dict:
    return yaml.safe_load((repo / "params.yaml").read_text(encoding="utf-8"))


def write_params(repo: Path, params: dict) -> None:
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")


def tiny_target(root: Path, name: str, seed: int) -> dict:
    """A tiny binary csv task ``root/<name>.csv`` (48 rows) and its params entry."""
    csv = root / f"{name}.csv"
    if not csv.exists():
        write_task_csv(csv, list(BINARY), rows=48, seed=seed)
    return task_spec(csv, BINARY)


def tiny_repo(root: Path) -> Path:
    """``root/repo``: tiny random backbone, sources src_a and src_b, target tgt_a, 3-step budgets; not run yet."""
    root.mkdir(parents=True, exist_ok=True)
    save_tiny_backbone(root / "tiny-backbone")
    backbone = {
        "name": "tiny-llama", "kind": "causal",
        "source": {"kind": "local", "path": str(root / "tiny-backbone"), "format": "hf"},
    }
    tasks = {name: tiny_target(root, name, seed) for name, seed in [("src_a", 1), ("src_b", 2), ("tgt_a", 3)]}
    return make_repo(root, backbone, tasks, ["src_a", "src_b"], ["tgt_a"])


def default_repo(root: Path) -> Path:
    """``root/repo``: the project with its own params.yaml (the default run, real budgets); not run yet."""
    params = read_params(REPO)
    root.mkdir(parents=True, exist_ok=True)
    repo = make_repo(root, params["backbone"], params["tasks"], params["source_tasks"], params["target_tasks"])
    shutil.copy(REPO / "params.yaml", repo / "params.yaml")  # make_repo's 3-step budgets out, the real ones in
    return repo


def add_target(repo: Path, name: str, spec: dict) -> None:
    """Define task ``name`` in params.yaml and list it under target_tasks."""
    params = read_params(repo)
    params["tasks"][name] = spec
    params["target_tasks"].append(name)
    write_params(repo, params)


def pending_stages(repo: Path, threads: int | None = 1) -> list[str]:
    """The stages `dvc status` says would run."""
    return sorted(json.loads(dvc(repo, "status", "--json", threads=threads).stdout))


def stage_env() -> dict[str, str]:
    """The environment a stage runs in: this venv first on PATH, passive OpenMP waits, no hub access."""
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    return env


def run(repo: Path, *command: str) -> str:
    """Run ``command`` in ``repo``; its stdout, or exit with the tail of its output."""
    result = subprocess.run(command, cwd=repo, env=stage_env(), capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"error: {' '.join(command)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return result.stdout


def repo_with_backbone(root: Path, tiny: bool, backbone: Path) -> Path:
    """A scratch repo whose ``models/backbone`` is ready: the tiny one materialised by its stage, or ``backbone``
    (a materialised folder) linked into the default repo."""
    if tiny:
        repo = tiny_repo(root)
        run(repo, sys.executable, "-m", "stages.backbone")
        return repo
    repo = default_repo(root)
    (repo / "models").mkdir()
    (repo / "models" / "backbone").symlink_to(Path(backbone).resolve(), target_is_directory=True)
    return repo
