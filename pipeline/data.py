"""Prepared datasets: a task's raw source cleaned, deduplicated and split into train/dev/test on disk.

``data/prepared/<task>/`` holds ``dataset/`` (a ``datasets.DatasetDict`` with columns ``input`` and ``label``)
and ``task.json`` (:class:`TaskInfo`: labels, label words, template, split sizes, what was dropped, source hash).
"""

from __future__ import annotations

import itertools
import json
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import datasets
import numpy as np
import pandas as pd

from pipeline.atomic import atomic_dir
from pipeline.errors import PipelineError
from pipeline.sources import describe_source, load_raw_table
from pipeline.tasks import KEY_SEP, PAIR_LABELS, SPLITS, TaskSpec

PREPARED_DIR = Path("data/prepared")  # one folder per task, relative to the repo root
DATASET_DIR = "dataset"
INFO_FILE = "task.json"
# ``key`` is the normalised text (text + tab + text_b for pairs): what dedup and the cross-task overlap check compare.
FEATURES = datasets.Features(
    {"input": datasets.Value("string"), "label": datasets.Value("int64"), "key": datasets.Value("string")}
)


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


def prepare_task(spec: TaskSpec, out_dir: Path, seed: int, root: Path) -> TaskInfo:
    """Load, clean, dedupe, shuffle (seeded) and split a task, then write it to ``out_dir`` atomically.

    Test is cut first, then dev, then up to ``splits.train`` examples of the rest, so growing ``train``
    never changes dev or test.  An existing ``out_dir`` is only replaced once the new one is complete.
    """
    raw, digest = load_raw_table(spec.source, f"{spec.where}.source", root)
    if spec.negative_pairs:
        raw = _with_negative_pairs(raw, spec, seed, describe_source(spec.source, root))
    examples = spec.to_examples(raw, describe_source(spec.source, root))
    dropped = {"other_labels": len(raw) - len(examples)}
    empty = examples["key"].map(lambda key: "" in key.split(KEY_SEP))
    dropped["empty"] = int(empty.sum())
    examples = examples[~empty]
    duplicate = examples["key"].duplicated(keep="first")
    dropped["duplicates"] = int(duplicate.sum())
    examples = examples[~duplicate]

    _check_labels_occur(examples, spec, describe_source(spec.source, root))
    if spec.balance:
        balanced = _balanced(examples, seed)
        dropped["balance"] = len(examples) - len(balanced)
        examples = balanced
    splits = _split(examples, spec, seed)
    info = TaskInfo(
        name=spec.name,
        labels=list(spec.labels),
        label_words=list(spec.label_words),
        template=spec.template,
        sizes={split: len(frame) for split, frame in splits.items()},
        label_counts={split: _label_counts(frame, spec.labels) for split, frame in splits.items()},
        source_sha256=digest,
        dropped=dropped,
    )
    dataset = datasets.DatasetDict(
        {
            split: datasets.Dataset.from_dict(
                {"input": frame["input"].tolist(), "label": frame["label"].tolist(), "key": frame["key"].tolist()},
                features=FEATURES,
            )
            for split, frame in splits.items()
        }
    )
    _write(out_dir, dataset, info)
    return info


def _check_labels_occur(examples: pd.DataFrame, spec: TaskSpec, where_file: str) -> None:
    # A label that never occurs is usually a misspelt label_words key (e.g. "sport" for "sports").
    present = set(examples["label"].tolist())
    missing = [label for index, label in enumerate(spec.labels) if index not in present]
    if missing:
        raise PipelineError(
            f"{where_file}: label {missing[0]!r} of params.yaml: {spec.where}.label_words never occurs in the data"
        )


def _with_negative_pairs(raw: pd.DataFrame, spec: TaskSpec, seed: int, where_file: str) -> pd.DataFrame:
    """Label a table of real pairs: a seeded half keep their own text_b ("match"), the other half take another row's.

    The mismatched half pass their text_b round in a cycle, so no row keeps its own; a row whose borrowed text_b
    happens to equal its own (a short reply such as "yes.") is still a match and is labelled so.
    """
    assert spec.text_b_column is not None
    if spec.label_column in raw.columns:
        raise PipelineError(
            f"{where_file}: already has a column {spec.label_column!r}; params.yaml: {spec.where}.negative_pairs"
            f" writes that column (columns.label), so name a new one"
        )
    if spec.text_b_column not in raw.columns:
        return raw  # to_examples names the missing column
    order = np.random.default_rng([seed, 1]).permutation(len(raw))  # its own stream, apart from the split's
    mismatched = order[len(order) // 2 :]
    own = raw[spec.text_b_column].to_numpy()
    texts_b = own.copy()
    texts_b[mismatched] = own[np.roll(mismatched, 1)]
    match, mismatch = PAIR_LABELS
    return raw.assign(
        **{spec.text_b_column: texts_b, spec.label_column: np.where(texts_b == own, match, mismatch)}
    )


def _balanced(examples: pd.DataFrame, seed: int) -> pd.DataFrame:
    """A seeded sample of every label down to the rarest label's count, rows kept in their original order.

    A corpus whose classes differ tenfold (subjectivity: 1,097 plot summaries against 12,808 reviews) would
    otherwise teach a prompt to say the majority word.
    """
    rng = np.random.default_rng(seed)
    smallest = int(examples["label"].value_counts().min())
    keep = [
        index
        for _, group in examples.groupby("label", sort=True)
        for index in rng.choice(group.index.to_numpy(), size=smallest, replace=False)
    ]
    return examples.loc[sorted(keep)]


def _split(examples: pd.DataFrame, spec: TaskSpec, seed: int) -> dict[str, pd.DataFrame]:
    sizes, labels = spec.splits, spec.labels
    needed = sizes["dev"] + sizes["test"] + 2 * len(labels)
    if len(examples) < needed:
        raise PipelineError(
            f"params.yaml: {spec.where}.splits: only {len(examples)} usable examples, need dev + test"
            f" + 2 train per label = {needed}"
        )
    shuffled = examples.iloc[np.random.default_rng(seed).permutation(len(examples))].reset_index(drop=True)
    test_end = sizes["test"]
    dev_end = test_end + sizes["dev"]
    splits = {
        "train": shuffled.iloc[dev_end : dev_end + sizes["train"]],
        "dev": shuffled.iloc[test_end:dev_end],
        "test": shuffled.iloc[:test_end],
    }
    keys = [set(frame["key"]) for frame in splits.values()]
    assert all(a.isdisjoint(b) for a, b in itertools.combinations(keys, 2)), "deduplicated splits share a key"
    missing = [label for index, label in enumerate(labels) if not (splits["train"]["label"] == index).any()]
    if missing:
        raise PipelineError(
            f"params.yaml: {spec.where}.splits: no train example of label {missing[0]!r}; raise splits.train"
        )
    return splits


def _label_counts(frame: pd.DataFrame, labels: tuple[str, ...]) -> dict[str, int]:
    counts = frame["label"].value_counts()
    return {label: int(counts.get(index, 0)) for index, label in enumerate(labels)}


def _write(out_dir: Path, dataset: datasets.DatasetDict, info: TaskInfo) -> None:
    """Build the folder beside ``out_dir`` and swap it in, so readers (and a failed run) never see half of it."""
    with atomic_dir(out_dir) as tmp:
        with _quiet_progress():
            dataset.save_to_disk(str(tmp / DATASET_DIR))
        (tmp / INFO_FILE).write_text(info.to_json(), encoding="utf-8")


@contextmanager
def _quiet_progress():
    """Hide datasets' progress bars (one summary line per stage is the pipeline's convention)."""
    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_enabled:
            datasets.enable_progress_bars()


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
        raise PipelineError(f"{task_dir}: unreadable prepared data ({_first_line(exc)}); {rerun}") from None
    if not isinstance(dataset, datasets.DatasetDict) or set(dataset) != set(SPLITS):
        raise PipelineError(f"{task_dir / DATASET_DIR}: expected splits {', '.join(SPLITS)}; {rerun}")
    return dataset, info


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else type(exc).__name__


def shared_texts(task_dir: Path, other_dir: Path) -> int:
    """How many distinct texts two prepared tasks share (any split): a target should not contain source texts."""
    keys = [set(key for split in load_prepared(d)[0].values() for key in split["key"]) for d in (task_dir, other_dir)]
    return len(keys[0] & keys[1])
