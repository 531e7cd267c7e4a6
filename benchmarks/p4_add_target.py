"""P4: adding a target task. `dvc repro` ÷ running only the new stages (`dvc repro -s ...`). Target <= 1.1.

Two identical scratch git + DVC repos get a full `dvc repro` first (untimed). Then, per repeat, both get the
same new target in params.yaml (a new name each repeat, so nothing comes from DVC's run cache) and, in turn:

* repo A runs plain `dvc repro`, which must run only data@<new>, the adapt@<new>-... stages and report;
* repo B runs `dvc repro -s <the stages repo A ran>` (those stages alone, in pipeline order).

The ratio of the medians is what DVC's check of every unchanged stage costs on top of the work itself.
Nothing touches repo A between the edit and the timed run. The stages it ran are printed, and a stage of any
other task fails the benchmark; afterwards `dvc status` must list nothing in either repo.

Second figure (issue 13): repo A then changes ``distill.lambda`` and runs `dvc repro`. The stages that must run
are those that read what changed: distill, method_inputs (it hashes P), the adapt@ runs of the methods that read
P (mpt, mpt_full; pipeline/config/method_inputs.py) and report. The last line is stages run ÷ stages that must
run (1.00: nothing else reran); a stage that must run but did not fails the benchmark.

--tiny uses the tiny setup of tests/test_end_to_end.py (via benchmarks/scratch_repo.py); without it the repos
are the default run (params.yaml as it is; the new target copies the first target's data under a new name), which
needs two full default runs first (about 40 min on 2 cores).

    python benchmarks/p4_add_target.py [--tiny] [--repeats N]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import scratch_repo
from pipeline.config.method_inputs import DISTILLED, UPSTREAM


def must_run_after_distill_change(params: dict) -> set[str]:
    """The stages that read P, directly or through a run that does: what a change to distill must rerun."""
    readers = [m for m in params["adapt"]["methods"] if UPSTREAM.get(m) == DISTILLED]
    runs = {f"adapt@{t}-{m}-{s}" for t in params["target_tasks"] for m in readers for s in params["seeds"]}
    return {"distill", "method_inputs", "report"} | runs


def distill_change_ratio(repo: Path, threads: int | None) -> float:
    """Change distill.lambda in ``repo`` (fully run), `dvc repro`, and return stages run ÷ stages that must run."""
    params = scratch_repo.read_params(repo)
    params["distill"]["lambda"] = params["distill"]["lambda"] / 2 + 0.05
    scratch_repo.write_params(repo, params)
    ran = scratch_repo.ran_stages(scratch_repo.dvc(repo, "repro", threads=threads).stdout)
    must = must_run_after_distill_change(params)
    print(f"distill.lambda -> {params['distill']['lambda']}: `dvc repro` ran {', '.join(sorted(ran))}")
    if must - ran:
        raise SystemExit(f"error: after a distill change these did not run: {sorted(must - ran)}")
    return len(ran) / len(must)


def pipeline_order(stage: str) -> int:
    """data@ before adapt@ before report: `dvc repro -s` runs its targets in the order given."""
    return 0 if stage.startswith("data@") else 2 if stage == "report" else 1


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiny", action="store_true", help="tiny backbone and tasks (the e2e test's setup)")
    p.add_argument("--repeats", type=int, default=3, help="targets added per repo (median); default 3")
    p.add_argument("--keep", type=Path, help="build the scratch repos here and keep them (default: a temp dir)")
    args = p.parse_args()
    threads = 1 if args.tiny else None
    with tempfile.TemporaryDirectory(prefix="p4-") as temp:
        root = args.keep or Path(temp)
        repos = {}
        for side in ("repro", "only_new"):
            repo = scratch_repo.tiny_repo(root / side) if args.tiny else scratch_repo.default_repo(root / side)
            scratch_repo.dvc(repo, "repro", threads=threads)
            repos[side] = repo
        print(f"scratch repos: {', '.join(str(r) for r in repos.values())} (full dvc repro done in both)")
        times = {side: [] for side in repos}
        for r in range(args.repeats):
            for side, repo in repos.items():  # interleaved: A, B, A, B, ...
                name = f"new{r}"
                if args.tiny:
                    spec = scratch_repo.tiny_target(root / side, name, seed=100 + r)
                else:
                    params = scratch_repo.read_params(repo)
                    spec = params["tasks"][params["target_tasks"][0]]
                scratch_repo.add_target(repo, name, spec)
                # Nothing touches repo A between the edit and the timed `dvc repro` (a `dvc status` first would
                # hash the unchanged stages' deps and hide part of what is measured); repo B runs what A ran.
                command = ["repro"] if side == "repro" else ["repro", "-s", *sorted(expected, key=pipeline_order)]
                started = time.perf_counter()
                result = scratch_repo.dvc(repo, *command, threads=threads)
                times[side].append(time.perf_counter() - started)
                ran = sorted(scratch_repo.ran_stages(result.stdout))
                print(f"{side} +{name}: `dvc {' '.join(command)}` ran {', '.join(ran)} in {times[side][-1]:.1f} s")
                if side == "repro":
                    own = (f"data@{name}", f"adapt@{name}-")
                    if f"data@{name}" not in ran or any(s != "report" and not s.startswith(own) for s in ran):
                        raise SystemExit(f"error: adding {name} ran {ran}: stages beyond its own and report")
                    expected = ran
                elif ran != expected:
                    raise SystemExit(f"error: `dvc repro -s` ran {ran}, not {expected}")
                if scratch_repo.pending_stages(repo, threads):
                    raise SystemExit(f"error: stages still pending after {side} +{name}")
        medians = {side: statistics.median(values) for side, values in times.items()}
        print(f"median: dvc repro {medians['repro']:.2f} s, only the new stages {medians['only_new']:.2f} s")
        print(f"P4 add-target dvc repro / new stages alone: {medians['repro'] / medians['only_new']:.2f}")
        ratio = distill_change_ratio(repos["repro"], threads)
        print(f"P4 distill.lambda change: stages run / stages that must run: {ratio:.2f}")


if __name__ == "__main__":
    main()
