"""P13: the collecting `dvc repro` after a fan-out ÷ the report stage alone. Goal <= 1.5, and it trains nothing.

A scratch tiny repo (shared stages done, untimed) runs `python -m pipeline fanout --jobs 2 --by seed --threads 1`
over seeds 0-3 (method pt: 4 adapt@ runs). Then, ``--repeats`` times, interleaved:

* the collecting step again: dvc.lock as it was before the fan-out, the runs' and report's outputs deleted and
  `seeds` listed in another order (the report tracks it, the runs do not: so the report is not in the run-cache,
  as after a real fan-out), then `dvc repro`, which must restore the 4 runs from the run-cache and run the report;
* the report alone: `dvc repro --force --single-item report`.

The last line is the ratio of the medians.

    python benchmarks/p13_collect.py [--steps N] [--repeats N] [--keep DIR]
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import scratch_repo
import sweep_repo

SEEDS = [0, 1, 2, 3]


def main() -> None:
    p = sweep_repo.parser(__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3, help="timed rounds (median), 1-3; default 3")
    args = p.parse_args()
    if not 1 <= args.repeats < len(SEEDS):  # each round needs a seeds order of its own
        raise SystemExit(f"error: --repeats must be 1 to {len(SEEDS) - 1}, got {args.repeats}")
    with tempfile.TemporaryDirectory(prefix="p13-") as temp:
        root = args.keep or Path(temp)
        repo = sweep_repo.sweep_repo(root, SEEDS, ["pt"], args.steps, threads=1)
        before = (repo / "dvc.lock").read_text(encoding="utf-8")
        seconds, last = sweep_repo.fanout(repo, jobs=2, by="seed", threads=1)
        print(f"fanout over seeds {SEEDS}: {seconds:.1f} s ({last})", flush=True)
        times: dict[str, list[float]] = {"collect": [], "report": []}
        for r in range(1, args.repeats + 1):
            params = scratch_repo.read_params(repo)
            params["seeds"] = SEEDS[r % len(SEEDS):] + SEEDS[:r % len(SEEDS)]  # a report not run before
            scratch_repo.write_params(repo, params)
            (repo / "dvc.lock").write_text(before, encoding="utf-8")
            for folder in ("results/adapt", "reports"):
                shutil.rmtree(repo / folder, ignore_errors=True)
            collect, output = sweep_repo.timed(repo, sys.executable, "-m", "dvc", "repro")
            ran, restored = scratch_repo.ran_stages(output), output.count("is cached - skipping run")
            if ran != {"report"} or restored < len(SEEDS):
                raise SystemExit(f"error: the collecting dvc repro ran {sorted(ran)}, restored {restored} stages")
            report, _ = sweep_repo.timed(repo, sys.executable, "-m", "dvc", "repro", "--force", "--single-item",
                                         "report")
            times["collect"].append(collect)
            times["report"].append(report)
            print(f"collect (restored {restored}, ran report) {collect:.1f} s; report alone {report:.1f} s",
                  flush=True)
        medians = {name: statistics.median(values) for name, values in times.items()}
        print(f"P13 collecting dvc repro / report stage alone (tiny backbone): "
              f"{medians['collect'] / medians['report']:.2f}")


if __name__ == "__main__":
    main()
