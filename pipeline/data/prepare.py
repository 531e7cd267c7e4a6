"""Preparing a dataset: a task's raw source cleaned, deduplicated and split into train/dev/test on disk (the
folder's layout and reading it back: pipeline/data/prepared.py)."""

from __future__ import annotations

import itertools
import re
from contextlib import contextmanager
from pathlib import Path

import datasets
import numpy as np
import pandas as pd

from pipeline.store.atomic import atomic_dir
from pipeline.errors import PipelineError
from pipeline.data.sources import SKIPPED_LINES, describe_source, load_raw_table
from pipeline.config.tasks import KEY_SEP, PAIR_LABELS, TaskSpec
from pipeline.data.prepared import DATASET_DIR, INFO_FILE, TaskInfo

# ``key`` is the normalised text (text + tab + text_b for pairs): what dedup and the cross-task overlap check compare.
FEATURES = datasets.Features(
    {"input": datasets.Value("string"), "label": datasets.Value("int64"), "key": datasets.Value("string")}
)
_WHITESPACE = re.compile(r"\s+")


def prepare_task(spec: TaskSpec, out_dir: Path, seed: int, root: Path) -> TaskInfo:
    """Load, clean, dedupe, shuffle (seeded) and split a task, then write it to ``out_dir`` atomically.

    Test is cut first, then dev, then up to ``splits.train`` examples of the rest, so growing ``train``
    never changes dev or test.  An existing ``out_dir`` is only replaced once the new one is complete.
    """
    raw, digest = load_raw_table(spec.source, f"{spec.where}.source", root)
    where_file = describe_source(spec.source, root)
    # Only when lines were skipped, so task.json stays as it was for every other source.
    dropped = {"unmatched_lines": raw.attrs[SKIPPED_LINES]} if raw.attrs.get(SKIPPED_LINES) else {}
    if spec.negative_pairs:
        raw = _with_negative_pairs(raw, spec, seed, where_file)
    examples = to_examples(spec, raw, where_file)
    dropped["other_labels"] = len(raw) - len(examples)
    # astype(bool): on no rows, map gives an object Series, which indexing would take for column names.
    empty = examples["key"].map(lambda key: "" in key.split(KEY_SEP)).astype(bool)
    dropped["empty"] = int(empty.sum())
    examples = examples[~empty]
    duplicate = examples["key"].duplicated(keep="first")
    dropped["duplicates"] = int(duplicate.sum())
    examples = examples[~duplicate]

    if examples.empty:
        counts = ", ".join(f"{count} {reason}" for reason, count in dropped.items() if count)
        raise PipelineError(f"{where_file}: no usable rows: all {len(raw)} were left out ({counts})")
    _check_labels_occur(examples, spec, where_file)
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



def to_examples(spec: TaskSpec, df: pd.DataFrame, where_file: str) -> pd.DataFrame:
    """Prompted examples: columns ``input`` (filled template), ``label`` (index into labels), ``key`` (dedup).

    Rows whose raw label is in ``drop_labels`` (or equals the binarize threshold) are left out, so
    ``len(df) - len(result)`` is the number dropped for their label.  Empty texts are kept (callers count them),
    unless a text column is empty in every row.

    Raw labels match ``label_words``, ``drop_labels`` and ``relabel`` with surrounding whitespace ignored and case
    kept; a number written as a float (``1.0``, as parquet or JSON give integer labels with a missing value) matches
    the integer label (``1``).
    """
    for key, column in (("text", spec.text_column), ("label", spec.label_column), ("text_b", spec.text_b_column)):
        if column is not None and column not in df.columns:
            raise PipelineError(f"{where_file}: {_missing_column(column, df, f'{spec.where}.columns.{key}')}")
    raw = _as_known_numbers(df[spec.label_column].fillna("").astype(str).str.strip(), spec)
    keep = ~raw.isin(spec.drop_labels)
    raw = raw.replace(spec.relabel) if spec.relabel else raw
    if spec.binarize:
        raw, keep = _binarized(spec, raw, keep, where_file)
    index = {label: position for position, label in enumerate(spec.labels)}
    unknown = sorted(set(raw[keep]) - set(index))
    if unknown:
        raise PipelineError(f"{where_file}: {_unknown_labels(unknown, raw[keep], spec)}")
    texts = _texts(spec, df.loc[keep, spec.text_column])
    _check_not_all_empty(texts, spec.text_column, f"{spec.where}.columns.text", where_file)
    if spec.text_b_column:
        texts_b = _texts(spec, df.loc[keep, spec.text_b_column])
        _check_not_all_empty(texts_b, spec.text_b_column, f"{spec.where}.columns.text_b", where_file)
        inputs = [spec.template.format(text=a, text_b=b) for a, b in zip(texts, texts_b, strict=True)]
        key = texts + KEY_SEP + texts_b
    else:
        inputs = [spec.template.format(text=text) for text in texts]
        key = texts
    return pd.DataFrame(
        {"input": inputs, "label": raw[keep].map(index).astype("int64").to_numpy(), "key": key.to_numpy()}
    )

def _missing_column(column: str, df: pd.DataFrame, key: str) -> str:
    """Why ``column`` is not found; a column that differs only in case or surrounding spaces is named."""
    close = [str(name) for name in df.columns if str(name).strip().casefold() == column.strip().casefold()]
    if close:
        return f"no column {column!r}, but there is {close[0]!r} (names match exactly); set params.yaml: {key}"
    known = ", ".join(repr(str(name)) for name in df.columns[:20])
    return f"no column {column!r} (params.yaml: {key}; the file has {known})"


def _as_known_numbers(raw: pd.Series, spec: TaskSpec) -> pd.Series:
    """``1.0`` as ``1`` where ``1`` is a label the spec names and ``1.0`` is not (floats for integer labels)."""
    known = set(spec.labels) | spec.drop_labels | set(spec.relabel)
    renames = {}
    for value in set(raw) - known:
        try:
            number = float(value)
        except ValueError:
            continue
        if number.is_integer() and str(int(number)) in known:
            renames[value] = str(int(number))
    return raw.replace(renames) if renames else raw


def _unknown_labels(unknown: list[str], labels: pd.Series, spec: TaskSpec) -> str:
    """The error for labels outside label_words and drop_labels, with what to set for the usual causes."""
    column = spec.label_column
    if "" in unknown:
        empty = labels == ""
        first = int(empty.to_numpy().argmax()) + 1
        return (
            f"{int(empty.sum())} rows have no label in column {column!r} (the first is data row {first}); add \"\" to"
            f" params.yaml: {spec.where}.drop_labels to leave them out"
        )
    # Case is kept (two labels may differ only in case); a near miss says which key maps it.
    for names, key in ((spec.labels, "label_words"), (spec.drop_labels, "drop_labels")):
        folded = {name.casefold(): name for name in names}
        close = next((label for label in unknown if label.casefold() in folded), None)
        if close is not None:
            target = folded[close.casefold()]
            fix = f"relabel: {{{close}: {target}}}" if key == "label_words" else f"drop_labels: [{target}, {close}]"
            return (
                f"label {close!r} in column {column!r} is not in params.yaml: {spec.where}.{key}, but {target!r} is"
                f" (labels match case-sensitively); set {spec.where}.{fix}"
            )
    shown = ", ".join(repr(label) for label in unknown[:5]) + (", ..." if len(unknown) > 5 else "")
    return (
        f"label {shown} in column {column!r} is not in params.yaml: {spec.where}.label_words"
        f" ({', '.join(spec.labels)}) nor in {spec.where}.drop_labels"
    )


def _check_not_all_empty(texts: pd.Series, column: str, key: str, where_file: str) -> None:
    if len(texts) and not texts.astype(bool).any():
        raise PipelineError(f"{where_file}: column {column!r} is empty in all {len(texts)} rows (params.yaml: {key})")


def _binarized(spec: TaskSpec, raw: pd.Series, keep: pd.Series, where_file: str) -> tuple[pd.Series, pd.Series]:
    assert spec.binarize is not None
    values = pd.to_numeric(raw.where(keep, "0"), errors="coerce")
    bad = values.isna()
    if bad.any():
        raise PipelineError(
            f"{where_file}: column {spec.label_column!r} has non-numeric value {raw[bad].iloc[0]!r}"
            f" (data row {bad.to_numpy().argmax() + 1}); params.yaml: {spec.where}.binarize needs numbers"
            f" (or list the value in {spec.where}.drop_labels to leave such rows out)"
        )
    threshold = spec.binarize.threshold
    labels = pd.Series(spec.binarize.above, index=raw.index).where(values > threshold, spec.binarize.below)
    return labels, keep & (values != threshold)

def _texts(spec: TaskSpec, column: pd.Series) -> pd.Series:
    """Strip, collapse whitespace runs, and cut at ``max_chars`` on a word boundary."""
    texts = column.fillna("").astype(str).map(lambda text: _WHITESPACE.sub(" ", text).strip())
    return texts.map(lambda text: _truncate(spec, text)) if spec.max_chars else texts

def _truncate(spec: TaskSpec, text: str) -> str:
    assert spec.max_chars is not None
    if len(text) <= spec.max_chars:
        return text
    cut = text[: spec.max_chars + 1]
    # Back up to the last space so no word is cut in half; a single giant word is cut hard.
    space = cut.rfind(" ")
    return (cut[:space] if space > 0 else cut[: spec.max_chars]).rstrip()
