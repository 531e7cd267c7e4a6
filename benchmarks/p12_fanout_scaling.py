"""P12: cost per target run of a fan-out as the work grows: 1, 2, 4, 8 targets, seconds per run. Goal: flat within 10%.

One scratch tiny repo (shared stages done, untimed); per size n, n new targets (new names, so nothing comes from the
run-cache), one run each (method pt, seed 0, one k, ``--steps`` steps), and `python -m pipeline fanout --jobs 2
--by target --threads 1` timed whole: the shared stages checked (the new targets' data@ run), n experiments on DVC's
queue with 2 workers, the collecting `dvc repro`, which must run the report alone. Seconds per run: its wall time
÷ n. The last line is the largest ÷ the smallest of the four (1.00: flat). With one target, one of the two workers
has nothing to do.

    python benchmarks/p12_fanout_scaling.py [--steps N] [--keep DIR]
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import scratch_repo
import sweep_repo

SIZES = (1, 2, 4, 8)


def main() -> None:
    args = sweep_repo.parser(__doc__.splitlines()[0]).parse_args()
    with tempfile.TemporaryDirectory(prefix="p12-") as temp:
        root = args.keep or Path(temp)
        repo = sweep_repo.sweep_repo(root, [0], ["pt"], args.steps, threads=1)
        per_run = {}
        for n in SIZES:
            params = scratch_repo.read_params(repo)
            names = [f"p12_{n}_{i}" for i in range(n)]
            for i, name in enumerate(names):
                params["tasks"][name] = {**scratch_repo.tiny_target(root, name, seed=100 * n + i), "k_shot": [4]}
            params["target_tasks"] = names
            scratch_repo.write_params(repo, params)
            seconds, last = sweep_repo.fanout(repo, jobs=2, by="target", threads=1)
            per_run[n] = seconds / n
            print(f"{n} targets: fanout {seconds:.1f} s, {per_run[n]:.1f} s per run ({last})", flush=True)
        print(f"P12 seconds per target run, largest / smallest over {', '.join(map(str, SIZES))} targets (tiny "
              f"backbone): {max(per_run.values()) / min(per_run.values()):.2f}")


if __name__ == "__main__":
    main()
