"""DVC stage ``data@<task>``: ``python stages/prepare.py <task>`` writes data/prepared/<task>."""

import sys
from pathlib import Path

# `python stages/prepare.py` puts stages/ on sys.path, not the repo root; the root is needed for `import pipeline`.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.data import PREPARED_DIR, prepare_task  # noqa: E402
from pipeline.errors import PipelineError  # noqa: E402
from pipeline.params import section  # noqa: E402
from pipeline.settings import seed_of  # noqa: E402
from pipeline.schema import load_checked_params  # noqa: E402
from pipeline.stage import run_stage  # noqa: E402
from pipeline.tasks import TaskSpec  # noqa: E402


def main(argv: list[str]) -> str:
    """Prepare the task named in ``argv`` from params.yaml; return the summary line."""
    if len(argv) != 1:
        raise PipelineError("usage: python stages/prepare.py <task>")
    task, params = argv[0], load_checked_params()
    tasks = section(params, "tasks")
    if not isinstance(tasks, dict) or task not in tasks:
        known = ", ".join(tasks) if isinstance(tasks, dict) else "none"
        raise PipelineError(f"params.yaml: no task tasks.{task} (known: {known})")
    seed = seed_of(params)
    out_dir = PREPARED_DIR / task
    info = prepare_task(TaskSpec.from_params(task, tasks[task]), out_dir, seed, root=Path.cwd())
    sizes = "/".join(str(info.sizes[split]) for split in ("train", "dev", "test"))
    return f"{task}: {sizes} train/dev/test examples, {info.num_labels} labels -> {out_dir}"


if __name__ == "__main__":
    run_stage("data@" + sys.argv[1] if len(sys.argv) > 1 else "data", main)
