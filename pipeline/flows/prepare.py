"""Stage ``data@<task>``: a task's raw source cleaned, deduplicated and split into data/prepared/<task>."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.config.load import section
from pipeline.config.params import seed_of
from pipeline.config.tasks import TaskSpec
from pipeline.data.prepare import prepare_task
from pipeline.errors import PipelineError
from pipeline.layout import prepared_dir


def run(params: dict[str, Any], task: str) -> str:
    """Prepare ``tasks.<task>``; return the summary line."""
    tasks = section(params, "tasks")
    if not isinstance(tasks, dict) or task not in tasks:
        known = ", ".join(tasks) if isinstance(tasks, dict) else "none"
        raise PipelineError(f"params.yaml: no task tasks.{task} (known: {known})")
    out_dir = prepared_dir(task)
    info = prepare_task(TaskSpec.from_params(task, tasks[task]), out_dir, seed_of(params), root=Path.cwd())
    sizes = "/".join(str(info.sizes[split]) for split in ("train", "dev", "test"))
    return f"{task}: {sizes} train/dev/test examples, {info.num_labels} labels -> {out_dir}"
