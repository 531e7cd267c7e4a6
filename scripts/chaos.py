"""Chaos check: SIGKILL, SIGTERM or Ctrl-C training stages at random points, rerun, demand the uninterrupted bytes.

    python scripts/chaos.py [--kills N] [--seed S] [--signals KILL TERM INT] [--stages source@src_a distill ...]
                            [--steps K]

On the tiny random backbone (the end-to-end test's setup, with longer step budgets so that kills land
mid-training), it first runs the whole pipeline once for reference hashes. Then for each signal and each training
stage it N times: forces the stage to rerun, sends the signal to its process group (as a terminal's Ctrl-C or a
batch system's SIGTERM reaches every process of the job) after a random delay, checks that the previous outputs
survived (outputs persist and are replaced atomically) and, for SIGTERM and SIGINT, which a stage turns into a
clean stop, that no temporary file is left behind; it reruns the stage (`dvc repro --force --single-item`,
since intact outputs look up to date to DVC; it resumes from the stage's checkpoint when one was written) and
then `dvc repro`, and compares every output's md5 in dvc.lock with the reference (wall-time files aside);
`dvc status` must then be clean.
One summary line per signal, then the overall one; the exit status is 1 if any resumed run ended different.
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
from dataclasses import dataclass
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from scratch_repo import dvc, read_params, tiny_repo, write_params  # noqa: E402

TRAINING_STAGES = ("source@src_a", "source@src_b", "distill", "adapt@tgt_a-mpt-0", "adapt@tgt_a-pt-0")
TIMED = ("timing.json", "transfer.csv", "transfer.md")  # wall time is not reproducible, by nature
SIGNALS = ("KILL", "TERM", "INT")  # SIGKILL cannot be handled; SIGTERM and SIGINT (Ctrl-C) stop a stage cleanly


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


def kill_during(repo: Path, stage: str, delay: float, signum: int) -> tuple[bool, str]:
    """Start a forced rerun of ``stage`` and send ``signum`` to its whole process group after ``delay`` s.

    Returns whether the stage was still running when signalled (a real interruption), and its stderr.
    """
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.update(OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE", DVC_NO_ANALYTICS="1")
    with tempfile.TemporaryFile(mode="w+") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "dvc", "repro", "--force", "--single-item", stage],
            cwd=repo, env=env, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True,
            # A script started with `nohup … &` passes an ignored SIGINT on to its children; Ctrl-C must reach them.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        try:
            process.wait(timeout=delay)
            hit = False
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signum)
            process.wait()
            hit = True
        stderr.seek(0)
        return hit, stderr.read()


def leftovers(repo: Path) -> list[str]:
    """Temporary files and folders of atomic writes (``.<name>.<random>.tmp``) anywhere in the workspace."""
    return sorted(str(path.relative_to(repo)) for path in repo.rglob(".*.tmp") if ".dvc" not in path.parts)


@dataclass
class Tally:
    """What one signal's kills did."""

    tried: int = 0
    interrupted: int = 0
    resumed_from_checkpoint: int = 0
    stopped_cleanly: int = 0  # the stage printed its one line `stopped: ...` (SIGTERM, SIGINT)
    equal: int = 0

    def line(self, handled: bool) -> str:
        """The summary; ``handled``: the signals could be handled, so say how many stops were clean."""
        clean = f"{self.stopped_cleanly} stopped with the one-line message, " if handled else ""
        return (
            f"{self.tried} kills tried, {self.interrupted} interrupted a running stage, "
            f"{self.resumed_from_checkpoint} resumed from a checkpoint, {clean}"
            f"{self.equal}/{self.tried} reruns ended byte-identical"
        )


def kill_and_rerun(
    repo: Path, stage: str, signum: signal.Signals, delay: float, reference: dict[str, str], tally: Tally
) -> None:
    """One kill of ``stage`` with ``signum`` after ``delay`` s, the checks after it and the rerun, counted in ``tally``."""
    before = set(leftovers(repo))
    hit, stderr = kill_during(repo, stage, delay, signum)
    tally.tried += 1
    tally.interrupted += hit
    tally.resumed_from_checkpoint += (repo / ".checkpoints" / stage).is_dir()
    tally.stopped_cleanly += f"stopped: {stage.split('@')[0]}: {signum.name}" in stderr
    kept = outputs_match_lock(repo, stage)
    # SIGKILL leaves an atomic write's temporary behind (the next write makes a new one); a stop that the stage
    # handles must not.
    left = sorted(set(leftovers(repo)) - before) if signum != signal.SIGKILL else []
    dvc(repo, "repro", "--force", "--single-item", stage, threads=1)
    dvc(repo, "repro", threads=1)  # downstream stages that read the new timing.json
    clean = "up to date" in dvc(repo, "status", threads=1).stdout
    hashes = lock_hashes(repo)
    same = hashes == reference and kept and clean and not left
    tally.equal += same
    if not same:  # say what differs, so a failure can be chased
        differing = sorted(p for p in set(hashes) | set(reference) if hashes.get(p) != reference.get(p))
        print(f"  differs: {differing}; status clean: {clean}; left behind: {left}", flush=True)
    print(f"{stage} {signum.name}: killed={'yes' if hit else 'no (had finished)'} outputs intact={kept} equal={same}",
          flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=5, help="kills per stage and signal")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random kill points")
    parser.add_argument("--signals", nargs="+", default=list(SIGNALS), choices=SIGNALS, help="signals to send")
    parser.add_argument("--stages", nargs="+", default=list(TRAINING_STAGES), help="stages to kill")
    parser.add_argument("--steps", type=int, default=300, help="training steps of each stage to kill (long enough to hit)")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    tallies: dict[str, Tally] = {}
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
        for name in args.signals:
            signum, tally = signal.Signals[f"SIG{name}"], tallies.setdefault(f"SIG{name}", Tally())
            for stage in args.stages:
                duration = stage_seconds(repo, stage)
                for _ in range(args.kills):
                    # Start-up (imports, loading) takes a fixed few seconds; aim most kills at the training part.
                    kill_and_rerun(repo, stage, signum, rng.uniform(0.4, 0.95) * duration, reference, tally)
    for name, tally in tallies.items():
        print(f"chaos {name}: {tally.line(handled=name != 'SIGKILL')}")
    total = Tally(*(sum(getattr(t, field) for t in tallies.values()) for field in Tally.__dataclass_fields__))
    print(f"chaos: {total.line(handled=set(tallies) != {'SIGKILL'})}")
    return 0 if total.equal == total.tried else 1


if __name__ == "__main__":
    raise SystemExit(main())
