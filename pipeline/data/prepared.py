"""Prepared datasets as the data stage leaves them, read back (writing them: pipeline/data/prepare.py).

``data/prepared/<task>/`` holds ``dataset/`` (a ``datasets.DatasetDict`` with columns ``input`` and ``label``)
and ``task.json`` (:class:`TaskInfo`: labels, label words, template, split sizes, what was dropped, source hash).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import datasets

from pipeline.config.tasks import SPLITS
from pipeline.errors import PipelineError, one_line

DATASET_DIR = "dataset"
INFO_FILE = "task.json"


@dataclass
class TaskInfo:
    """What a prepared task holds; ``label`` values in the dataset index ``labels`` and ``label_words``."""

    name: str
    labels: list[str]
    label_words: list[str]
    template: str
    sizes: dict[str, int]
    label_counts: dict[str, dict[str, int]]  # split -> raw label -> examples
    source_sha256: str
    dropped: dict[str, int] = field(default_factory=dict)  # empty / duplicates / other_labels -> rows

    @property
    def num_labels(self) -> int:
        """How many classes the task has."""
        return len(self.labels)

    def to_json(self) -> str:
        """The task.json text."""
        return json.dumps(asdict(self), indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> TaskInfo:
        """Parse task.json text; a missing field raises TypeError, bad JSON ValueError."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object")
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


def load_prepared(task_dir: Path) -> tuple[datasets.DatasetDict, TaskInfo]:
    """Load ``data/prepared/<task>`` written by :func:`prepare_task`."""
    task_dir = Path(task_dir)
    rerun = f"run `dvc repro data@{task_dir.name}`"
    if not (task_dir / INFO_FILE).is_file() or not (task_dir / DATASET_DIR).is_dir():
        raise PipelineError(f"{task_dir}: prepared data not found; {rerun}")
    try:
        info = TaskInfo.from_json((task_dir / INFO_FILE).read_text(encoding="utf-8"))
        dataset = datasets.load_from_disk(str(task_dir / DATASET_DIR))
    except (OSError, ValueError, TypeError) as exc:
        raise PipelineError(f"{task_dir}: unreadable prepared data ({one_line(exc)}); {rerun}") from None
    if not isinstance(dataset, datasets.DatasetDict) or set(dataset) != set(SPLITS):
        raise PipelineError(f"{task_dir / DATASET_DIR}: expected splits {', '.join(SPLITS)}; {rerun}")
    return dataset, info


def shared_texts(task_dir: Path, other_dir: Path) -> int:
    """How many distinct texts two prepared tasks share (any split): a target should not contain source texts."""
    keys = [set(key for split in load_prepared(d)[0].values() for key in split["key"]) for d in (task_dir, other_dir)]
    return len(keys[0] & keys[1])
