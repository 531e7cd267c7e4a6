"""Chaos check: SIGKILL, SIGTERM or Ctrl-C training stages mid-training, rerun, demand the uninterrupted bytes.

    python scripts/chaos.py [--kills N] [--max-tries M] [--seed S] [--signals KILL TERM INT]
                            [--stages source@src_a distill ...] [--steps K]

On the tiny random backbone (the end-to-end test's setup, with longer step budgets and a dozen checkpoints per
training run), it first runs the whole pipeline once for reference hashes. Then for each signal and each training
stage it forces the stage to rerun and sends the signal to its process group (as a terminal's Ctrl-C or a batch
system's SIGTERM reaches every process of the job) at a random point of its training: once the stage has saved a
randomly chosen checkpoint, after a random part of one checkpoint interval. A kill lands mid-training when the
stage was still running when signalled and a mid-way checkpoint is left; one that came too late (a loaded machine
can finish the stage first) is counted as missed and another is sent, until N landed or M were sent.
After each kill it checks that nothing is half-written: each output of the stage is as dvc.lock records it or
absent (DVC removes a stage's outputs before running it, the previous version staying in its cache; the stage
writes each one whole, atomically) and, for SIGTERM and SIGINT, which a stage turns into a clean stop, that no
temporary file is left behind and that the stage said `stopped: ...`; it reruns the stage (`dvc repro --force
--single-item`: forced, or DVC's run-cache would restore the previous run of the same inputs instead of resuming),
which must say that it resumed from the checkpoint when the kill landed, then `dvc repro`, and
compares every output's md5 in dvc.lock with the reference (wall-time files aside); `dvc status` must then be
clean and no checkpoint left.
One summary line per signal (kills tried, landed mid-training, reruns resumed from a checkpoint, reruns
byte-identical, temporaries left), then the overall one; the exit status is 1 if any check failed or too few
kills landed.
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


def outputs_whole(repo: Path, stage: str) -> bool:
    """After a kill: each of the stage's outputs on disk has the md5 dvc.lock records, or is absent (nothing
    half-written). DVC deleted them before the stage ran; one the stage had already replaced again is whole.

    A wall-time file may already hold the new run's time if the kill came after it was (atomically) replaced.
    """
    status = json.loads(dvc(repo, "status", "--json", stage, threads=1).stdout).get(stage, [])
    changed = {path: how for entry in status for path, how in entry.get("changed outs", {}).items()}
    other = [entry for entry in status if set(entry) - {"changed outs"}]
    return not other and all(how == "deleted" or path.endswith(TIMED) for path, how in changed.items())


def checkpoint_steps(repo: Path, stage: str) -> dict[Path, int]:
    """Steps done per checkpoint of ``stage`` (one folder; adapt@ has one per k) that can be read right now.

    A checkpoint being swapped in may be missing for a moment; it is simply not seen on this look.
    """
    steps = {}
    for state in (repo / ".checkpoints" / stage).rglob("state.json"):
        try:
            steps[state.parent] = json.loads(state.read_text(encoding="utf-8"))["steps_done"]
        except (OSError, ValueError, KeyError):
            continue
    return steps


@dataclass
class Attempt:
    """One signal sent (or not) to a forced rerun of a stage."""

    sent: bool  # the stage was still running when the signal went out
    landed: bool  # and it stopped mid-training: a mid-way checkpoint is left for the rerun to resume from
    resume_point: int  # steps done of the latest mid-way checkpoint left (0: none)
    stderr: str


def kill_during(
    repo: Path, stage: str, signum: int, steps: int, every: int, rng: random.Random, patience: float
) -> Attempt:
    """Start a forced rerun of ``stage`` and send ``signum`` to its process group at a random point of its training.

    The point is an event, not a guess at the stage's duration (which a loaded machine stretches): wait until the
    stage has saved a randomly chosen checkpoint (not its first, so that the time per step is known; not its
    last), then wait a random part of one checkpoint interval, so that the signal lands anywhere in a training step,
    a dev score or a checkpoint write. ``patience``: seconds to wait for that checkpoint before giving up.
    """
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.update(OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE", DVC_NO_ANALYTICS="1")
    if checkpoint_steps(repo, stage):  # a finished rerun clears them; a stale one would be mistaken for progress
        raise RuntimeError(f"{stage}: a checkpoint is left from an earlier run: {checkpoint_steps(repo, stage)}")
    target = every * rng.randint(2, max(2, (steps - 1) // every - 1))  # a checkpoint with at least one more after it
    fraction = rng.random()
    with tempfile.TemporaryFile(mode="w+") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "dvc", "repro", "--force", "--single-item", stage],
            cwd=repo, env=env, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True,
            # A script started with `nohup … &` passes an ignored SIGINT on to its children; Ctrl-C must reach them.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        seen: dict[Path, tuple[float, int]] = {}  # first sighting of each checkpoint: (time, steps done)
        per_step = None
        deadline = time.monotonic() + patience
        while per_step is None and process.poll() is None and time.monotonic() < deadline:
            now = time.monotonic()
            for folder, done in checkpoint_steps(repo, stage).items():
                first = seen.setdefault(folder, (now, done))
                if target <= done < steps and done > first[1]:
                    per_step = (now - first[0]) / (done - first[1])
                    break
            else:
                time.sleep(0.02)
        if per_step is not None:
            time.sleep(fraction * every * per_step)
        sent = process.poll() is None
        if sent:
            os.killpg(process.pid, signum)
        process.wait()
        stderr.seek(0)
        mid_way = [done for done in checkpoint_steps(repo, stage).values() if done < steps]
        return Attempt(sent, sent and bool(mid_way), max(mid_way, default=0), stderr.read())


def leftovers(repo: Path) -> list[str]:
    """Temporary files and folders of atomic writes (``.<name>.<random>.tmp``) anywhere in the workspace."""
    return sorted(str(path.relative_to(repo)) for path in repo.rglob(".*.tmp") if ".dvc" not in path.parts)


@dataclass
class Tally:
    """What one signal's kills did."""

    tried: int = 0
    landed: int = 0  # stopped the stage mid-training (the others came too late: it had finished training)
    resumed: int = 0  # reruns that said they resumed from a checkpoint
    equal: int = 0  # reruns that ended with the uninterrupted run's bytes (and a clean `dvc status`)
    temporaries: int = 0  # temporary files of atomic writes the stops left behind
    stopped_cleanly: int = 0  # the stage printed its one line `stopped: ...` (SIGTERM, SIGINT)
    failed: int = 0  # kills after which a check failed (bytes, a kept temporary, a landed kill not resumed)

    def line(self, handled: bool) -> str:
        """The summary; ``handled``: the signals could be handled, so temporaries count as failures and the clean
        stops are counted."""
        kept = "" if handled else " (SIGKILL cannot remove them)"
        clean = f", {self.stopped_cleanly} stopped with the one-line message" if handled else ""
        return (
            f"{self.tried} kills tried, {self.landed} landed mid-training ({self.tried - self.landed} missed), "
            f"{self.resumed} reruns resumed from a checkpoint, {self.equal}/{self.tried} reruns byte-identical, "
            f"{self.temporaries} temporaries left{kept}{clean}"
        )


def kill_and_rerun(
    repo: Path, stage: str, signum: signal.Signals, steps: int, every: int, rng: random.Random,
    reference: dict[str, str], tally: Tally,
) -> bool:
    """One kill of ``stage`` with ``signum``, the checks after it and the rerun, counted in ``tally``; whether the
    kill landed mid-training."""
    before = set(leftovers(repo))
    attempt = kill_during(repo, stage, signum, steps, every, rng, patience=1800)
    tally.tried += 1
    tally.landed += attempt.landed
    handled = signum != signal.SIGKILL
    stopped = f"stopped: {stage.split('@')[0]}: {signum.name}" in attempt.stderr
    tally.stopped_cleanly += stopped
    kept = outputs_whole(repo, stage)
    # SIGKILL leaves an atomic write's temporary behind (the next write makes a new one); a stop that the stage
    # handles must not.
    left = sorted(set(leftovers(repo)) - before)
    tally.temporaries += len(left)
    rerun = dvc(repo, "repro", "--force", "--single-item", stage, threads=1)
    resumed = ": resuming after step " in rerun.stderr  # pipeline/training/loop.py says so when it restores
    tally.resumed += resumed
    dvc(repo, "repro", threads=1)  # downstream stages that read the new timing.json
    clean = "up to date" in dvc(repo, "status", threads=1).stdout
    hashes = lock_hashes(repo)
    same = hashes == reference and kept and clean and not checkpoint_steps(repo, stage)
    tally.equal += same
    ok = same and (not attempt.landed or resumed) and not (handled and (left or (attempt.landed and not stopped)))
    tally.failed += not ok
    if not same:  # say what differs, so a failure can be chased
        differing = sorted(p for p in set(hashes) | set(reference) if hashes.get(p) != reference.get(p))
        print(f"  differs: {differing}; status clean: {clean}; checkpoints left: {checkpoint_steps(repo, stage)}",
              flush=True)
    if handled and left:
        print(f"  left behind: {left}", flush=True)
    where = f"landed mid-training (checkpoint at step {attempt.resume_point} of {steps})" if attempt.landed else "missed (" + (
        "not mid-training)" if attempt.sent else "had finished)")
    print(f"{stage} {signum.name}: {where}; resumed={resumed} outputs whole or absent={kept} equal={same} ok={ok}", flush=True)
    return attempt.landed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=5, help="kills that must land mid-training, per stage and signal")
    parser.add_argument("--max-tries", type=int, help="kills sent per stage and signal at most (default: 3 x --kills)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random kill points")
    parser.add_argument("--signals", nargs="+", default=list(SIGNALS), choices=SIGNALS, help="signals to send")
    parser.add_argument("--stages", nargs="+", default=list(TRAINING_STAGES), help="stages to kill")
    parser.add_argument("--steps", type=int, default=300, help="training steps of each stage to kill")
    args = parser.parse_args()
    if args.steps < 8:
        parser.error("--steps must be at least 8: kills land between the second and the second-last checkpoint")
    max_tries = args.max_tries or 3 * args.kills
    every = max(1, args.steps // 12)  # a dozen checkpoints per run: kill points spread over the whole of it
    rng = random.Random(args.seed)
    tallies: dict[str, Tally] = {}
    short: list[str] = []
    with tempfile.TemporaryDirectory(prefix="chaos-") as scratch:
        repo = tiny_repo(Path(scratch))
        params = read_params(repo)
        # Only the sections of the stages to kill get the long budget: the others stay short, as they only feed them.
        for key in {stage.split("@")[0] for stage in args.stages}:
            params[key]["steps"] = args.steps
        params["checkpoint_every"] = every
        write_params(repo, params)
        dvc(repo, "repro", threads=1)
        reference = lock_hashes(repo)
        for name in args.signals:
            signum, tally = signal.Signals[f"SIG{name}"], tallies.setdefault(f"SIG{name}", Tally())
            for stage in args.stages:
                landed = tries = 0
                while landed < args.kills and tries < max_tries:  # a kill that came too late is retried
                    landed += kill_and_rerun(repo, stage, signum, args.steps, every, rng, reference, tally)
                    tries += 1
                if landed < args.kills:
                    short.append(f"{stage} SIG{name}: {landed} of {args.kills} kills landed in {tries} tries")
    for name, tally in tallies.items():
        print(f"chaos {name}: {tally.line(handled=name != 'SIGKILL')}")
    total = Tally(*(sum(getattr(t, field) for t in tallies.values()) for field in Tally.__dataclass_fields__))
    print(f"chaos: {total.line(handled=set(tallies) != {'SIGKILL'})}; {total.failed} failed")
    for line in short:
        print(f"too few kills landed: {line}")
    return 0 if total.failed == 0 and not short else 1


if __name__ == "__main__":
    raise SystemExit(main())
