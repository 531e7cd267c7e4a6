"""P5: the default `dvc repro`, per stage and in total. Target <= 20 min on 2 CPU cores.

Modes:

* default: `git clone` this repository (its committed HEAD: uncommitted edits are not in the clone) into a
  scratch folder and run `dvc repro` there, its output teed to a log; the total is the wall time of the whole
  `dvc repro` (DVC's own checks and every interpreter start included).
* ``--from-log FILE``: parse an existing `dvc repro` log. Stage names come from the "Running stage '...'" lines
  and times from the summary line every stage prints last (``[stage] ... (12.3 s)``); the total is their sum,
  which leaves out DVC's own work and interpreter start-up (a few seconds per stage).
* ``--tiny``: the tiny e2e setup (tests/test_end_to_end.py) instead of the default params: a quick check.

    python benchmarks/p5_default_repro.py [--tiny | --from-log FILE] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUNNING = re.compile(r"^Running stage '(?P<stage>[^']+)'")
SUMMARY = re.compile(r"^\[(?P<tag>[^\]]+)\] .*\((?P<seconds>\d+(?:\.\d+)?) s\)\s*$")
SKIPPED = re.compile(r"^Stage '(?P<stage>[^']+)' (?:didn't change|is cached)")


def parse_log(text: str) -> tuple[dict[str, float | None], list[str]]:
    """Seconds per stage that ran (None: no summary line, e.g. it failed or the log ends), and skipped stages."""
    stages: dict[str, float | None] = {}
    skipped: list[str] = []
    current = None
    for line in re.split(r"[\r\n]+", text):  # progress bars redraw with \r
        line = line.strip()
        if match := RUNNING.match(line):
            current = match["stage"]
            stages[current] = None
        elif (match := SUMMARY.match(line)) and current is not None and stages[current] is None:
            stages[current] = float(match["seconds"])
        elif match := SKIPPED.match(line):
            skipped.append(match["stage"])
    return stages, skipped


def run_repro(root: Path, tiny: bool) -> tuple[str, float]:
    """A scratch clone (or the tiny setup), `dvc repro` in it; its log text and wall seconds."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import scratch_repo

    if tiny:
        repo, threads = scratch_repo.tiny_repo(root), "1"
    else:
        repo, threads = root / "clone", None
        subprocess.run(["git", "clone", "-q", str(scratch_repo.REPO), str(repo)], check=True)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.update(DVC_NO_ANALYTICS="1", OMP_WAIT_POLICY="PASSIVE", TOKENIZERS_PARALLELISM="false")
    if threads:
        env["OMP_NUM_THREADS"] = threads
    log = root / "dvc_repro.log"
    print(f"running `dvc repro` in {repo}, log {log}", flush=True)
    started = time.perf_counter()
    with log.open("w", encoding="utf-8") as out:
        code = subprocess.run([sys.executable, "-m", "dvc", "repro"], cwd=repo, env=env, stdout=out,
                              stderr=subprocess.STDOUT).returncode
    seconds = time.perf_counter() - started
    text = log.read_text(encoding="utf-8", errors="replace")
    if code != 0:
        raise SystemExit(f"error: dvc repro exited {code}; see {log}")
    return text, seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--from-log", type=Path, help="parse this `dvc repro` log instead of running one")
    mode.add_argument("--tiny", action="store_true", help="run the tiny e2e setup instead of the default params")
    p.add_argument("--keep", type=Path, help="run in this (new) folder and keep it (default: a temp dir)")
    args = p.parse_args()
    wall = None
    if args.from_log:
        text = args.from_log.read_text(encoding="utf-8", errors="replace")
    else:
        with tempfile.TemporaryDirectory(prefix="p5-") as temp:
            root = args.keep or Path(temp)
            root.mkdir(parents=True, exist_ok=True)
            text, wall = run_repro(root, args.tiny)
    stages, skipped = parse_log(text)
    if not stages:
        raise SystemExit("error: no \"Running stage '...'\" lines in the log")
    for stage, seconds in stages.items():
        print(f"{stage:40s} {'no summary line' if seconds is None else f'{seconds:8.1f} s'}")
    if skipped:
        print(f"skipped (unchanged or from the run cache): {', '.join(skipped)}")
    missing = [stage for stage, seconds in stages.items() if seconds is None]
    summed = sum(seconds for seconds in stages.values() if seconds is not None)
    print(f"{len(stages)} stages ran; stage summaries add up to {summed:.1f} s")
    if missing:
        print(f"warning: incomplete log: no summary line for {', '.join(missing)}")
    if wall is not None:
        print(f"wall time of `dvc repro`: {wall:.1f} s (DVC checks and interpreter start-up included)")
    total = summed if wall is None else wall
    name = "tiny" if args.tiny else "default"
    note = "; incomplete log" if missing else ""
    print(f"P5 {name} dvc repro total: {total / 60:.1f} min (target <= 20{note})")


if __name__ == "__main__":
    main()
