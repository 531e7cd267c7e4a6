"""Chaos check: SIGKILL training stages at random points, rerun `dvc repro`, demand the uninterrupted bytes.

    python scripts/chaos.py [--kills N] [--seed S] [--stages source@src_a distill ...] [--steps K]

On the tiny random backbone (the end-to-end test's setup, with longer step budgets so that kills land
mid-training), it first runs the whole pipeline once for reference hashes. Then for each training stage it N
times: forces the stage to rerun, kills its process group after a random delay, checks that the previous outputs
survived the kill (outputs persist and are replaced atomically), reruns the stage (`dvc repro --force
--single-item`, since intact outputs look up to date to DVC; it resumes from the stage's checkpoint when one was
written) and then `dvc repro`, and compares every output's md5 in dvc.lock with the reference (wall-time files
aside); `dvc status` must then be clean.
The last line is the summary; the exit status is 1 if any resumed run ended different.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from scratch_repo import dvc, read_params, tiny_repo, write_params  # noqa: E402

TRAINING_STAGES = ("source@src_a", "source@src_b", "distill", "adapt@tgt_a-mpt-0", "adapt@tgt_a-pt-0")
TIMED = ("timing.json", "transfer.csv", "transfer.md")  # wall time is not reproducible, by nature


def lock_hashes(repo: Path) -> dict[str, str]:
    lock = yaml.safe_load((repo / "dvc.lock").read_text(encoding="utf-8"))
    return {
        out["path"]: out["md5"]
        for stage in lock["stages"].values()
        for out in stage.get("outs", [])
        if not out["path"].endswith(TIMED)
    }


def outputs_match_lock(repo: Path, stage: str) -> bool:
    """After a kill: the stage's outputs on disk still have the md5s dvc.lock records (nothing half-written).

    A wall-time file may already hold the new run's time if the kill came after it was (atomically) replaced.
    """
    status = json.loads(dvc(repo, "status", "--json", stage, threads=1).stdout).get(stage, [])
    changed = [path for entry in status for path in entry.get("changed outs", {})]
    other = [entry for entry in status if set(entry) - {"changed outs"}]
    return not other and all(path.endswith(TIMED) for path in changed)


def stage_seconds(repo: Path, stage: str) -> float:
    started = time.perf_counter()
    dvc(repo, "repro", "--force", "--single-item", stage, threads=1)
    return time.perf_counter() - started


def kill_during(repo: Path, stage: str, delay: float) -> bool:
    """Start a forced rerun of ``stage`` and SIGKILL its whole process group after ``delay`` s.

    Returns True if the stage was still running when killed (a real interruption).
    """
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.update(OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE", DVC_NO_ANALYTICS="1")
    process = subprocess.Popen(
        [sys.executable, "-m", "dvc", "repro", "--force", "--single-item", stage],
        cwd=repo, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        process.wait(timeout=delay)
        return False
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=5, help="kills per stage")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random kill points")
    parser.add_argument("--stages", nargs="+", default=list(TRAINING_STAGES), help="stages to kill")
    parser.add_argument("--steps", type=int, default=300, help="training steps of each stage to kill (long enough to hit)")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="chaos-") as scratch:
        repo = tiny_repo(Path(scratch))
        params = read_params(repo)
        # Only the sections of the stages to kill get the long budget: the others stay short, as they only feed them.
        for key in {stage.split("@")[0] for stage in args.stages}:
            params[key]["steps"] = args.steps
        params["checkpoint_every"] = max(1, args.steps // 12)
        write_params(repo, params)
        dvc(repo, "repro", threads=1)
        reference = lock_hashes(repo)
        tried = interrupted = resumed_from_checkpoint = equal = 0
        for stage in args.stages:
            duration = stage_seconds(repo, stage)
            for _ in range(args.kills):
                tried += 1
                # Start-up (imports, loading) takes a fixed few seconds; aim most kills at the training part.
                hit = kill_during(repo, stage, rng.uniform(0.4, 0.95) * duration)
                interrupted += hit
                resumed_from_checkpoint += (repo / ".checkpoints" / stage).is_dir()
                kept = outputs_match_lock(repo, stage)
                dvc(repo, "repro", "--force", "--single-item", stage, threads=1)
                dvc(repo, "repro", threads=1)  # downstream stages that read the new timing.json
                clean = "up to date" in dvc(repo, "status", threads=1).stdout
                hashes = lock_hashes(repo)
                same = hashes == reference and kept and clean
                equal += same
                if not same:  # say what differs, so a failure can be chased
                    differing = sorted(p for p in set(hashes) | set(reference) if hashes.get(p) != reference.get(p))
                    print(f"  differs: {differing}; status clean: {clean}", flush=True)
                print(f"{stage}: killed={'yes' if hit else 'no (had finished)'} outputs intact={kept} equal={same}",
                      flush=True)
    print(
        f"chaos: {tried} kills tried, {interrupted} interrupted a running stage, "
        f"{resumed_from_checkpoint} resumed from a checkpoint, {equal}/{tried} reruns ended byte-identical"
    )
    return 0 if equal == tried else 1


if __name__ == "__main__":
    raise SystemExit(main())
