"""`python -m pipeline fanout --jobs N --by seed|target`: the independent adapt@ runs on N parallel DVC experiments.

Nothing here schedules: DVC does. The steps, each one DVC command in the workspace:

1. the shared stages (backbone, every data@, source@, distill, method_inputs) run once: `dvc repro method_inputs data`;
2. one experiment per seed (or per target) is queued: `dvc exp run --queue -n fanout-seed-1 -S 'seeds=[1]' adapt`,
   which takes the workspace as it is (the shared stages' dvc.lock included), so it trains only its adapt@ runs;
3. DVC's queue runs them on N workers: `dvc exp run --run-all -j N`; every stage they run lands in the DVC cache
   and its run-cache (the experiments share this repository's cache);
4. one `dvc repro` collects: the run-cache restores every adapt@ run the experiments trained, and only the report
   runs. The experiments are then removed (`dvc exp remove`): their results are the workspace's now.

Threads: a worker's stages use ``numerics.threads`` from params.yaml, which also fixes their bytes. So that N
workers do not oversubscribe the cores, the thread count becomes cores // N (or ``--threads``) and is written to
params.yaml when it differs, with a line saying so: the fan-out then trains a different params point from a run at
the old count (source@, distill and adapt@ rerun for it), and equals a plain `dvc repro` at the new one.
GPUs: with several visible, each training stage takes its own one (pipeline/store/gpu_slots.py).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from pipeline.cli.dvc_run import dvc, ran_stages
from pipeline.errors import PipelineError
from pipeline.store.gpu_slots import GPUS_VAR, LOCKS_VAR

BY = {"seed": "seeds", "target": "target_tasks"}  # a split -> the params list each experiment narrows to one entry
PREFIX = "fanout"  # experiment names: fanout-<by>-<value>
SHARED_STAGES = ("method_inputs", "data")  # with their upstream: every stage but the adapt@ runs and the report
GPU_LOCKS = Path(".locks") / "gpus"  # beside the artifacts lock (store/locks.py); git-ignored
PARAMS = Path("params.yaml")


@dataclass(frozen=True)
class Part:
    """One experiment of a fan-out: the params list ``BY[by]`` narrowed to ``value``."""

    by: str
    value: int | str

    @property
    def name(self) -> str:
        return f"{PREFIX}-{self.by}-{self.value}"

    def override(self) -> str:
        """The experiment's ``-S`` argument: a one-entry list, in YAML."""
        return f"{BY[self.by]}={yaml.safe_dump([self.value], default_flow_style=True).strip()}"


def plan_parts(params: dict, by: str) -> list[Part]:
    """One part per entry of the params list ``by`` splits on, in params order."""
    if by not in BY:
        raise PipelineError(f"fanout: --by must be one of {', '.join(BY)}, got {by!r}")
    values = params.get(BY[by]) or []
    if not values:
        raise PipelineError(f"params.yaml: {BY[by]} is empty: nothing to fan out")
    return [Part(by, value) for value in values]


def worker_threads(jobs: int, cores: int, asked: int | None = None) -> int:
    """Threads per worker: ``asked``, else the cores shared evenly (at least one)."""
    if jobs < 1:
        raise PipelineError(f"fanout: --jobs must be at least 1, got {jobs}")
    if asked is not None and asked < 1:
        raise PipelineError(f"fanout: --threads must be at least 1, got {asked}")
    return asked or max(1, cores // jobs)


def set_threads(root: Path, threads: int) -> int | None:
    """Write ``numerics.threads: threads`` into params.yaml, comments kept; return the old count if it changed."""
    from ruamel.yaml import YAML  # DVC's own YAML library: a round trip that keeps the file's comments

    path = root / PARAMS
    handler = YAML()
    handler.preserve_quotes = True
    params = handler.load(path.read_text(encoding="utf-8"))
    numerics = params.get("numerics") if params else None
    if numerics is None or "threads" not in numerics:
        raise PipelineError(f"{path}: numerics.threads is missing")
    old = numerics["threads"]
    if old == threads:
        return None
    numerics["threads"] = threads
    with path.open("w", encoding="utf-8") as handle:
        handler.dump(params, handle)
    return old


def visible_gpus() -> list[str]:
    """The GPUs the stages could use: CUDA_VISIBLE_DEVICES if set, else every one torch counts (none on CPU)."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [gpu.strip() for gpu in listed.split(",") if gpu.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def worker_env(root: Path, threads: int, gpus: list[str]) -> dict[str, str]:
    """What DVC's queue workers inherit: the thread count for anything outside the stages' own numerics, and with
    several GPUs the pool the stages claim theirs from."""
    env = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    if len(gpus) > 1:
        env.update({GPUS_VAR: ",".join(gpus), LOCKS_VAR: str((root / GPU_LOCKS).resolve())})
    return env


def _check_commit(root: Path) -> None:
    """DVC's experiments start from a commit: refuse a folder without one, before anything changes."""
    found = subprocess.run(["git", "rev-parse", "--verify", "--quiet", "HEAD"], cwd=root, capture_output=True)
    if found.returncode != 0:
        raise PipelineError(f"{root}: no git commit to start the experiments from: run `python -m pipeline fanout` "
                            "in the project's clone, after committing once (git add -A && git commit)")


def _check_queue_is_free(root: Path) -> None:
    """`--run-all` runs every queued experiment: refuse to run someone else's along with ours."""
    busy = [line for line in dvc(root, "queue", "status", capture=True).splitlines()
            if line.split()[-1:] in (["Queued"], ["Running"])]
    if busy:
        raise PipelineError(f"fanout: DVC's queue already holds {len(busy)} queued or running experiments; run or "
                            "remove them first (dvc queue status; dvc queue remove --queued)")


def _experiments(root: Path) -> set[str]:
    return set(dvc(root, "exp", "list", "--name-only", capture=True).split())


def fanout(root: Path, jobs: int, by: str, threads: int | None = None, cores: int | None = None,
           log: Callable[[str], None] = print) -> list[str]:
    """Run the fan-out in the DVC repo ``root`` (its workspace as it is); return the stages the collecting `dvc
    repro` ran (the report alone when every part succeeded)."""
    _check_commit(root)
    params = yaml.safe_load((root / PARAMS).read_text(encoding="utf-8"))
    parts = plan_parts(params, by)
    cores = cores or len(os.sched_getaffinity(0))
    per_worker = worker_threads(jobs, cores, threads)
    _check_queue_is_free(root)  # before params.yaml is touched
    old = set_threads(root, per_worker)
    if old is not None:
        log(f"fanout: params.yaml numerics.threads {old} -> {per_worker} ({jobs} workers on {cores} cores): a "
            f"different params point from a {old}-thread run, "
            "since the thread count fixes a trained artifact's bytes; the training stages rerun for it")
    log(f"fanout: [1/4] the shared stages, once: dvc repro {' '.join(SHARED_STAGES)}")
    dvc(root, "repro", *SHARED_STAGES)
    stale = sorted(_experiments(root) & {part.name for part in parts})
    if stale:  # a name left by an earlier fan-out would refuse the new experiment
        dvc(root, "exp", "remove", *stale, capture=True)
    log(f"fanout: [2/4] queueing {len(parts)} experiments, one per {by}: {', '.join(p.name for p in parts)}")
    for part in parts:
        dvc(root, "exp", "run", "--queue", "-n", part.name, "-S", part.override(), "adapt", capture=True)
    gpus = visible_gpus()
    pinned = f", one GPU per training stage of {', '.join(gpus)}" if len(gpus) > 1 else ""
    log(f"fanout: [3/4] dvc exp run --run-all -j {jobs} ({per_worker} threads per worker{pinned})")
    dvc(root, "exp", "run", "--run-all", "-j", str(jobs), extra_env=worker_env(root, per_worker, gpus))
    failed = [part.name for part in parts if part.name not in _experiments(root)]
    if failed:
        raise PipelineError(f"fanout: {len(failed)} of {len(parts)} experiments failed: {', '.join(failed)}; see "
                            f"`dvc queue logs {failed[0]}`, then run the fan-out again (finished runs are restored)")
    log("fanout: [4/4] collecting: dvc repro (restores the runs from the run-cache)")
    output = dvc(root, "repro", capture=True)
    ran = ran_stages(output)
    restored = output.count("is cached - skipping run")
    dvc(root, "exp", "remove", *(part.name for part in parts), capture=True)
    log(f"fanout: collected: {restored} stages restored from the run-cache, ran {', '.join(ran) or 'nothing'}")
    return ran
