"""Prepared datasets as the data stage leaves them, read back (writing them: pipeline/data/prepare.py).

``data/prepared/<task>/`` holds ``dataset/`` (a ``datasets.DatasetDict`` with columns ``input``, ``label`` and
``key``, as ``save_to_disk`` writes it) and ``task.json`` (:class:`TaskInfo`: labels, label words, template, split
sizes, what was dropped, source hash).

Reading it back takes pyarrow alone, not ``datasets``: importing ``datasets`` (and the pandas it pulls in) costs
every training stage and the report ~0.7 s at start-up, about a tenth of a tiny stage, and they only read three
columns. The layout read here is save_to_disk's: ``dataset_dict.json`` names the splits, each split's
``state.json`` its Arrow stream files.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import pyarrow as pa
from pyarrow import ipc

from pipeline.config.tasks import SPLITS
from pipeline.errors import PipelineError, one_line

DATASET_DIR = "dataset"
INFO_FILE = "task.json"

Columns = dict[str, list]  # one split: column name -> its values, as Python objects


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


def load_prepared(task_dir: Path) -> tuple[dict[str, Columns], TaskInfo]:
    """Load ``data/prepared/<task>`` written by :func:`prepare_task`: each split's columns, and the task's info."""
    task_dir = Path(task_dir)
    rerun = f"run `dvc repro data@{task_dir.name}`"
    if not (task_dir / INFO_FILE).is_file() or not (task_dir / DATASET_DIR).is_dir():
        raise PipelineError(f"{task_dir}: prepared data not found; {rerun}")
    try:
        info = TaskInfo.from_json((task_dir / INFO_FILE).read_text(encoding="utf-8"))
        splits = _read_splits(task_dir / DATASET_DIR)
    except (OSError, ValueError, TypeError, KeyError) as exc:  # pyarrow's errors are OSError or ValueError
        raise PipelineError(f"{task_dir}: unreadable prepared data ({one_line(exc)}); {rerun}") from None
    if set(splits) != set(SPLITS):
        raise PipelineError(f"{task_dir / DATASET_DIR}: expected splits {', '.join(SPLITS)}; {rerun}")
    return {split: splits[split] for split in SPLITS}, info


def _read_splits(folder: Path) -> dict[str, Columns]:
    """The splits of a ``datasets.DatasetDict`` that ``save_to_disk`` wrote to ``folder``, by name."""
    names = json.loads((folder / "dataset_dict.json").read_text(encoding="utf-8"))["splits"]
    splits = {}
    for name in names:
        state = json.loads((folder / name / "state.json").read_text(encoding="utf-8"))
        tables = []
        for data_file in state["_data_files"]:
            filename = data_file["filename"]
            if Path(filename).name != filename or filename in ("", ".", ".."):  # a file of this split, nowhere else
                raise ValueError(f"{name}/state.json names {filename!r}, not a file in its folder")
            with pa.memory_map(str(folder / name / filename)) as source:
                tables.append(ipc.open_stream(source).read_all())
        splits[name] = pa.concat_tables(tables).to_pydict()
    return splits


def shared_texts(task_dir: Path, other_dir: Path) -> int:
    """How many distinct texts two prepared tasks share (any split): a target should not contain source texts."""
    keys = [set(key for split in load_prepared(d)[0].values() for key in split["key"]) for d in (task_dir, other_dir)]
    return len(keys[0] & keys[1])
