"""A task spec from params.yaml (``tasks.<name>``) and how it turns a raw table into prompted examples."""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from typing import Any

from pipeline.errors import PipelineError
from pipeline.config.load import check_keys, optional, positive, require
from pipeline.config.sources import check_source

TASK_KEYS = (
    "source", "columns", "template", "label_words", "relabel", "drop_labels", "binarize", "max_chars", "balance",
    "negative_pairs", "splits", "k_shot", "metrics",
)
ALL = "all"  # k_shot entry: the whole training split
# Metric names a task may list under ``metrics``; accuracy and macro-F1 are computed for every task regardless
# (pipeline.training.evaluate.OPTIONAL_METRICS computes the others).
METRICS = ("accuracy", "macro_f1", "mcc")
ALWAYS = ("accuracy", "macro_f1")
KShot = int | str  # a positive number of training examples, or ALL
SPLITS = ("train", "dev", "test")
# Separates text and text_b in an example's dedup key; normalised text never contains a tab.
KEY_SEP = "\t"


@dataclass(frozen=True)
class Binarize:
    """Map a numeric label column to two labels; values equal to ``threshold`` are dropped."""

    threshold: float
    above: str
    below: str


@dataclass(frozen=True)
class TaskSpec:
    """One classification task: where its data is, how to prompt it, which words name its labels."""

    name: str
    source: dict[str, Any]
    text_column: str
    label_column: str
    text_b_column: str | None
    template: str
    labels: tuple[str, ...]  # raw label values, in label_words order: an example's label is an index into this
    label_words: tuple[str, ...]
    drop_labels: frozenset[str]
    binarize: Binarize | None
    max_chars: int | None
    splits: dict[str, int]
    relabel: dict[str, str] = field(default_factory=dict)  # raw label -> a label of label_words (classes merged)
    negative_pairs: bool = False  # make the label column: "match" pairs vs "mismatch" (another row's text_b)
    balance: bool = False  # downsample every label to the rarest one's count before splitting (data.prepare_task)
    k_shot: tuple[KShot, ...] = (ALL,)  # training-set sizes a target is adapted with (one result per k)
    metrics: tuple[str, ...] = ALWAYS  # what the report shows for this task: ALWAYS plus what it asks for

    @property
    def where(self) -> str:
        """The params key path of this task."""
        return f"tasks.{self.name}"

    @classmethod
    def from_params(cls, name: str, spec: Any) -> TaskSpec:
        """Validate ``tasks.<name>`` from params.yaml; every error names the offending key path."""
        where = f"tasks.{name}"
        if not isinstance(spec, dict):
            raise PipelineError(f"params.yaml: {where} must be a mapping with keys {', '.join(TASK_KEYS)}")
        check_keys(spec, TASK_KEYS, where)
        source = require(spec, "source", dict, where)
        check_source(source, f"{where}.source")
        columns = require(spec, "columns", dict, where)
        check_keys(columns, ("text", "label", "text_b"), f"{where}.columns")
        text_b = optional(columns, "text_b", str, f"{where}.columns")
        labels, words = _label_words(require(spec, "label_words", dict, where), f"{where}.label_words")
        drop = {_label_key(value, f"{where}.drop_labels") for value in optional(spec, "drop_labels", list, where, [])}
        if drop & set(labels):
            shared = sorted(drop & set(labels))
            raise PipelineError(f"params.yaml: {where}.drop_labels and {where}.label_words share {shared}")
        binarize = _binarize(spec, labels, where) if "binarize" in spec else None
        relabel = _relabel(optional(spec, "relabel", dict, where, {}), labels, drop, binarize, f"{where}.relabel")
        splits = _splits(require(spec, "splits", dict, where), f"{where}.splits")
        return cls(
            name=name,
            source=source,
            text_column=require(columns, "text", str, f"{where}.columns"),
            label_column=require(columns, "label", str, f"{where}.columns"),
            text_b_column=text_b,
            template=_template(require(spec, "template", str, where), text_b is not None, f"{where}.template"),
            labels=labels,
            label_words=words,
            drop_labels=frozenset(drop),
            binarize=binarize,
            max_chars=positive(spec, "max_chars", int, where) if "max_chars" in spec else None,
            splits=splits,
            relabel=relabel,
            negative_pairs=_negative_pairs(spec, text_b, labels, where),
            balance=optional(spec, "balance", bool, where, False),
            k_shot=_k_shot(spec.get("k_shot", [ALL]), splits["train"], f"{where}.k_shot"),
            metrics=_metrics(spec.get("metrics", list(ALWAYS)), f"{where}.metrics"),
        )


def _label_key(value: Any, where: str) -> str:
    """A raw label as compared with the data: YAML ints (0/1) become "0"/"1"; surrounding spaces don't count."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise PipelineError(f"params.yaml: {where}: label {value!r} must be a string or an integer")
    return str(value).strip()


def _label_words(mapping: dict[Any, Any], where: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if len(mapping) < 2:
        raise PipelineError(f"params.yaml: {where} needs at least 2 labels, got {len(mapping)}")
    labels, words = [], []
    for raw, word in mapping.items():
        label = _label_key(raw, where)
        if not isinstance(word, str) or not word.strip():
            raise PipelineError(f"params.yaml: {where}.{label} must be a non-empty string, got {word!r}")
        if label in labels:
            raise PipelineError(f"params.yaml: {where} lists label {label!r} twice")
        labels.append(label)
        words.append(word)
    if len(set(words)) < len(words):
        raise PipelineError(f"params.yaml: {where} gives two labels the same word; they could not be told apart")
    return tuple(labels), tuple(words)


PAIR_LABELS = ("match", "mismatch")  # the labels negative_pairs writes


def _negative_pairs(spec: dict[str, Any], text_b: str | None, labels: tuple[str, ...], where: str) -> bool:
    """``negative_pairs: true`` needs a text_b column and exactly the labels it makes (PAIR_LABELS)."""
    if not optional(spec, "negative_pairs", bool, where, False):
        return False
    if text_b is None:
        raise PipelineError(f"params.yaml: {where}.negative_pairs needs {where}.columns.text_b (the pair's second text)")
    if set(labels) != set(PAIR_LABELS):
        raise PipelineError(
            f"params.yaml: {where}.label_words must name exactly the labels negative_pairs makes: {', '.join(PAIR_LABELS)}"
        )
    return True


def _relabel(
    mapping: dict[Any, Any], labels: tuple[str, ...], drop: set[str], binarize: Binarize | None, where: str
) -> dict[str, str]:
    """``relabel``: raw label -> one of the labels of label_words, so several raw classes become one."""
    if mapping and binarize is not None:
        raise PipelineError(f"params.yaml: {where} cannot be used with binarize, which makes the labels itself")
    result = {}
    for raw, label in mapping.items():
        key, target = _label_key(raw, where), _label_key(label, f"{where}.{raw}")
        if target not in labels:
            raise PipelineError(f"params.yaml: {where}.{key}: {target!r} is not a label of label_words")
        if key in drop:
            raise PipelineError(f"params.yaml: {where}.{key} is also in drop_labels")
        result[key] = target
    return result


def _binarize(spec: dict[str, Any], labels: tuple[str, ...], where: str) -> Binarize:
    mapping = require(spec, "binarize", dict, where)
    where = f"{where}.binarize"
    check_keys(mapping, ("threshold", "above", "below"), where)
    threshold = require(mapping, "threshold", (int, float), where)
    above, below = (
        _label_key(require(mapping, key, (str, int), where), f"{where}.{key}") for key in ("above", "below")
    )
    if above == below or set(labels) != {above, below}:
        raise PipelineError(
            f"params.yaml: {where}.above/below ({above!r}, {below!r}) must be the two labels of label_words"
        )
    return Binarize(float(threshold), above, below)


def _template(template: str, has_text_b: bool, where: str) -> str:
    """Check the placeholders: {text} always, {text_b} exactly when columns.text_b is given, nothing else."""
    try:
        fields = {field for _, field, _, _ in string.Formatter().parse(template) if field is not None}
    except ValueError as exc:
        raise PipelineError(
            f"params.yaml: {where} is not a valid template ({exc}); write {{{{ }}}} for a brace"
        ) from None
    if fields - {"text", "text_b"}:
        unknown = ", ".join("{" + field + "}" for field in sorted(fields - {"text", "text_b"}))
        raise PipelineError(f"params.yaml: {where} has unknown placeholder {unknown}; allowed: {{text}}, {{text_b}}")
    if "text" not in fields:
        raise PipelineError(f"params.yaml: {where} must contain {{text}}")
    if has_text_b != ("text_b" in fields):
        raise PipelineError(f"params.yaml: {where} must use {{text_b}} exactly when columns.text_b is given")
    return template


def _splits(mapping: dict[str, Any], where: str) -> dict[str, int]:
    check_keys(mapping, SPLITS, where)
    return {split: positive(mapping, split, int, where) for split in SPLITS}


def _k_shot(values: Any, train_size: int, where: str) -> tuple[KShot, ...]:
    """``k_shot``: distinct positive integers or "all"; an integer above ``splits.train`` can never be drawn.

    The prepared split may still hold fewer rows than ``splits.train`` (too little data); the draw checks that
    again against the real split (pipeline.data.fewshot).
    """
    if not isinstance(values, list) or not values:
        raise PipelineError(f"params.yaml: {where} must be a non-empty list of positive integers or {ALL!r}")
    for value in values:
        if value == ALL:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise PipelineError(f"params.yaml: {where}: {value!r} is neither a positive integer nor {ALL!r}")
        if value > train_size:
            raise PipelineError(
                f"params.yaml: {where}: k = {value} is larger than the training split (splits.train = {train_size})"
            )
    if len(set(values)) != len(values):
        raise PipelineError(f"params.yaml: {where} lists a value twice")
    return tuple(values)


def _metrics(values: Any, where: str) -> tuple[str, ...]:
    """``metrics``: names from METRICS; accuracy and macro-F1 are always reported, listed or not."""
    if not isinstance(values, list) or not all(isinstance(value, str) for value in values):
        raise PipelineError(f"params.yaml: {where} must be a list of metric names ({', '.join(METRICS)})")
    unknown = [value for value in values if value not in METRICS]
    if unknown:
        raise PipelineError(f"params.yaml: {where}: unknown metric {unknown[0]!r}; allowed: {', '.join(METRICS)}")
    return ALWAYS + tuple(value for value in METRICS if value in values and value not in ALWAYS)
