"""P6: peak resident memory of one training stage, `python -m stages.source <task>`. Target <= 3 GB.

In a scratch copy of the project (pipeline/, stages/, dvc.yaml, params.yaml), with ``models/backbone`` linked to
``--backbone`` and the task's data prepared there first (`python -m stages.prepare <task>`, or linked from
``--prepared``), the stage runs in a child process. A small Python wrapper runs the stage as its only child and
reads ``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss``, so nothing else (this script, the data preparation) is
counted. ``--steps N`` shortens the training (the peak is reached at the first training step and in the
evaluation after it, both of which every length runs); the default keeps params.yaml's steps.

Default task: bbc_news, whose inputs fill ``model.max_length`` (the largest activations of the source tasks).

    python benchmarks/p6_peak_memory.py [--tiny] [--task NAME] [--steps N] [--backbone DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import scratch_repo
from scratch_repo import run

MEASURE = (
    "import resource, subprocess, sys\n"
    "code = subprocess.run(sys.argv[1:]).returncode\n"
    "print(f'maxrss_kib {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}')\n"
    "sys.exit(code)\n"
)


def prepare(root: Path, args: argparse.Namespace) -> tuple[Path, str]:
    """The scratch repo with a backbone and the task's prepared data; the task's name."""
    repo = scratch_repo.repo_with_backbone(root, args.tiny, args.backbone)
    task = args.task or ("src_a" if args.tiny else "bbc_news")
    params = scratch_repo.read_params(repo)
    if args.steps:
        params["source"]["steps"] = args.steps
        params["source"]["warmup_steps"] = min(params["source"]["warmup_steps"], args.steps - 1)
        scratch_repo.write_params(repo, params)
    if args.prepared:
        (repo / "data" / "prepared").mkdir(parents=True)
        (repo / "data" / "prepared" / task).symlink_to((args.prepared / task).resolve(), target_is_directory=True)
    else:
        run(repo, sys.executable, "-m", "stages.prepare", task)
    return repo, task


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiny", action="store_true", help="tiny backbone and task (the e2e test's setup)")
    p.add_argument("--task", help="source task (default: bbc_news; src_a with --tiny)")
    p.add_argument("--steps", type=int, default=0, help="override source.steps (0: params.yaml's)")
    p.add_argument("--backbone", type=Path, default=scratch_repo.REPO / "models" / "backbone")
    p.add_argument("--prepared", type=Path, help="a data/prepared folder to link instead of running prepare.py")
    p.add_argument("--keep", type=Path, help="build the scratch repo here and keep it (default: a temp dir)")
    args = p.parse_args()
    if not args.tiny and not (args.backbone / "backbone.json").is_file():
        raise SystemExit(f"error: no backbone in {args.backbone}; run `dvc repro backbone` or pass --backbone DIR")
    with tempfile.TemporaryDirectory(prefix="p6-") as temp:
        root = args.keep or Path(temp)
        repo, task = prepare(root, args)
        out = run(repo, sys.executable, "-c", MEASURE, sys.executable, "-m", "stages.source", task)
    summary = [line for line in out.splitlines() if line.startswith("[source]")]
    kib = int(next(line for line in out.splitlines() if line.startswith("maxrss_kib")).split()[1])
    print(summary[-1] if summary else "(no stage summary line)")
    steps = args.steps or "params.yaml's"
    print(f"source@{task}: {steps} steps, peak RSS {kib / 1024:.0f} MiB")
    print(f"P6 peak RSS of source@{task}: {kib * 1024 / 1e9:.2f} GB (target <= 3)")


if __name__ == "__main__":
    main()
