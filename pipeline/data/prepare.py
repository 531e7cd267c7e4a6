"""Preparing a dataset: a task's raw source cleaned, deduplicated and split into train/dev/test on disk (the
folder's layout and reading it back: pipeline/data/prepared.py)."""

from __future__ import annotations

import itertools
from contextlib import contextmanager
from pathlib import Path

import datasets
import numpy as np
import pandas as pd

from pipeline.store.atomic import atomic_dir
from pipeline.errors import PipelineError
from pipeline.data.sources import describe_source, load_raw_table
from pipeline.config.tasks import KEY_SEP, TaskSpec
from pipeline.data.prepared import DATASET_DIR, INFO_FILE, TaskInfo

# ``key`` is the normalised text (text + tab + text_b for pairs): what dedup and the cross-task overlap check compare.
FEATURES = datasets.Features(
    {"input": datasets.Value("string"), "label": datasets.Value("int64"), "key": datasets.Value("string")}
)


def prepare_task(spec: TaskSpec, out_dir: Path, seed: int, root: Path) -> TaskInfo:
    """Load, clean, dedupe, shuffle (seeded) and split a task, then write it to ``out_dir`` atomically.

    Test is cut first, then dev, then up to ``splits.train`` examples of the rest, so growing ``train``
    never changes dev or test.  An existing ``out_dir`` is only replaced once the new one is complete.
    """
    raw, digest = load_raw_table(spec.source, f"{spec.where}.source", root)
    examples = spec.to_examples(raw, describe_source(spec.source, root))
    dropped = {"other_labels": len(raw) - len(examples)}
    empty = examples["key"].map(lambda key: "" in key.split(KEY_SEP))
    dropped["empty"] = int(empty.sum())
    examples = examples[~empty]
    duplicate = examples["key"].duplicated(keep="first")
    dropped["duplicates"] = int(duplicate.sum())
    examples = examples[~duplicate]

    _check_labels_occur(examples, spec, describe_source(spec.source, root))
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
