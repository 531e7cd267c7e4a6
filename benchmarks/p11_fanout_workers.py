"""P11: 8 independent adapt@ runs, 1 worker x 2 threads ÷ 2 workers x 1 thread, wall time. Goal >= 1.3 on 2 cores.

Two scratch tiny repos with the same sweep (one target, methods mpt and pt, seeds 0-3: 8 adapt@ runs, one k each,
``--steps`` steps) and their shared stages done (untimed), one at ``numerics.threads: 2``, one at 1:

* 1 worker x 2 threads: `dvc repro` (the 8 runs one after the other, then the report);
* 2 workers x 1 thread: `python -m pipeline fanout --jobs 2 --by seed --threads 1` (the shared stages checked,
  4 experiments on DVC's queue with 2 workers, the collecting `dvc repro`), whose collecting repro must run the
  report alone.

The last line is the first wall time ÷ the second. The two repos train different bytes (the thread count is a
param; see the README's fan-out section), the same work. Tiny backbone: the default one's 8 runs take ~20 min a
side on 2 cores.

    python benchmarks/p11_fanout_workers.py [--steps N] [--keep DIR]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import scratch_repo
import sweep_repo

SEEDS, METHODS = [0, 1, 2, 3], ["mpt", "pt"]


def main() -> None:
    args = sweep_repo.parser(__doc__.splitlines()[0]).parse_args()
    with tempfile.TemporaryDirectory(prefix="p11-") as temp:
        root = args.keep or Path(temp)
        serial = sweep_repo.sweep_repo(root / "serial", SEEDS, METHODS, args.steps, threads=2)
        parallel = sweep_repo.sweep_repo(root / "parallel", SEEDS, METHODS, args.steps, threads=1)
        print(f"scratch repos: {serial}, {parallel} (shared stages done; 8 adapt@ runs of {args.steps} steps each)")
        one, output = sweep_repo.timed(serial, sys.executable, "-m", "dvc", "repro")
        ran = scratch_repo.ran_stages(output)
        if len([stage for stage in ran if stage.startswith("adapt@")]) != 8:
            raise SystemExit(f"error: `dvc repro` ran {sorted(ran)}, not the 8 adapt@ runs")
        print(f"1 worker x 2 threads: `dvc repro` {one:.1f} s")
        two, last = sweep_repo.fanout(parallel, jobs=2, by="seed", threads=1)
        print(f"2 workers x 1 thread: `python -m pipeline fanout --jobs 2 --by seed` {two:.1f} s ({last})")
        print(f"P11 8 adapt runs, 1 worker x 2 threads / 2 workers x 1 thread (tiny backbone): {one / two:.2f}")


if __name__ == "__main__":
    main()
