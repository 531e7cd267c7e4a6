"""Stage ``data@<task>``: a task's raw source cleaned, deduplicated and split into data/prepared/<task>."""

from __future__ import annotations

from pathlib import Path

from pipeline.config.schema import Params
from pipeline.data.prepare import prepare_task
from pipeline.errors import PipelineError
from pipeline.layout import prepared_dir


def run(params: Params, task: str) -> str:
    """Prepare ``tasks.<task>``; return the summary line."""
    if task not in params.tasks:
        raise PipelineError(f"params.yaml: no task tasks.{task} (known: {', '.join(params.tasks)})")
    out_dir = prepared_dir(task)
    info = prepare_task(params.tasks[task], out_dir, params.seed, root=Path.cwd())
    sizes = "/".join(str(info.sizes[split]) for split in ("train", "dev", "test"))
    # Rows left out are said on the same line, so a source that loses most of its rows never does so silently.
    left_out = ", ".join(f"{count} {reason}" for reason, count in info.dropped.items() if count)
    return f"{task}: {sizes} train/dev/test examples, {info.num_labels} labels -> {out_dir}" + (
        f"; rows left out: {left_out}" if left_out else ""
    )
