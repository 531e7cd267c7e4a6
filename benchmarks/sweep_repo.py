"""What the fan-out benchmarks (P11-P13) share: a scratch tiny repo set up for a sweep of adapt@ runs, its shared
stages done and committed, and the fan-out command timed in it.

A sweep repo is benchmarks/scratch_repo.py's tiny repo with one k per target (k = 4), ``--steps`` adapt steps
(the tiny model trains ~20 steps a second on one core, so the default 200 makes training, not process start-up,
most of a run) and the given seeds, methods and thread count.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import scratch_repo


def parser(description: str) -> argparse.ArgumentParser:
    """The options every fan-out benchmark takes."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--steps", type=int, default=200, help="adapt steps per run; default 200")
    p.add_argument("--keep", type=Path, help="build the scratch repos here and keep them (default: a temp dir)")
    return p


def sweep_repo(root: Path, seeds: list[int], methods: list[str], steps: int, threads: int,
               targets: int = 1) -> Path:
    """``root/repo``: the tiny repo with ``targets`` targets (tgt_a, tgt_1, ...), its shared stages run, committed."""
    repo = scratch_repo.tiny_repo(root)
    params = scratch_repo.read_params(repo)
    names = ["tgt_a", *(f"tgt_{i}" for i in range(1, targets))]
    for i, name in enumerate(names[1:], 1):
        params["tasks"][name] = scratch_repo.tiny_target(root, name, seed=10 + i)
    for name in names:
        params["tasks"][name]["k_shot"] = [4]
    params["target_tasks"], params["seeds"] = names, seeds
    params["adapt"].update(methods=methods, steps=steps)
    params["numerics"]["threads"] = threads
    scratch_repo.write_params(repo, params)
    scratch_repo.dvc(repo, "repro", "method_inputs", "data", threads=threads)
    scratch_repo.git(repo, "add", "-A")
    scratch_repo.git(repo, "commit", "-qm", "shared stages")
    return repo


def timed(repo: Path, *command: str) -> tuple[float, str]:
    """Seconds and stdout of ``command`` run in ``repo`` (the venv first on PATH)."""
    started = time.perf_counter()
    output = scratch_repo.run(repo, *command)
    return time.perf_counter() - started, output


def fanout(repo: Path, jobs: int, by: str, threads: int) -> tuple[float, str]:
    """`python -m pipeline fanout` in ``repo``: its seconds and its last line (what the collecting repro ran)."""
    seconds, output = timed(repo, sys.executable, "-m", "pipeline", "fanout", "--jobs", str(jobs), "--by", by,
                            "--threads", str(threads))
    last = output.strip().splitlines()[-1]
    if not last.endswith("ran report"):
        raise SystemExit(f"error: the collecting dvc repro trained: {last}")
    return seconds, last
