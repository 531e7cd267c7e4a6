"""Task specs: key validation with key-path errors, and raw table -> prompted examples."""

from __future__ import annotations

import pandas as pd
import pytest

from pipeline.errors import PipelineError
from pipeline.config.tasks import TaskSpec
from pipeline.data.prepare import to_examples


def spec_dict(**overrides: object) -> dict:
    spec = {
        "source": {"kind": "file", "path": "raw.csv", "format": "csv"},
        "columns": {"text": "review", "label": "rating"},
        "template": "Review: {text}\nSentiment:",
        "label_words": {"fresh": " positive", "rotten": " negative"},
        "splits": {"train": 10, "dev": 2, "test": 2},
    }
    spec.update(overrides)
    return {key: value for key, value in spec.items() if value is not None}


def make(**overrides: object) -> TaskSpec:
    return TaskSpec.from_params("rt", spec_dict(**overrides))


def table(**columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame(columns, dtype=str)


def test_from_params_reads_every_key():
    spec = make(drop_labels=["plot"], max_chars=50)
    assert spec.labels == ("fresh", "rotten") and spec.label_words == (" positive", " negative")
    assert spec.drop_labels == {"plot"} and spec.max_chars == 50 and spec.text_b_column is None
    assert spec.splits == {"train": 10, "dev": 2, "test": 2} and spec.where == "tasks.rt"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"colour": "red"}, r"unknown key tasks\.rt\.colour; allowed keys under tasks\.rt: source, columns"),
        ({"source": None}, r"missing key tasks\.rt\.source"),
        ({"source": {"kind": "file", "path": "a", "format": "xml"}}, r"tasks\.rt\.source\.format must be one of"),
        ({"columns": {"text": "a"}}, r"missing key tasks\.rt\.columns\.label"),
        ({"columns": {"text": "a", "label": "b", "txt": "c"}}, r"unknown key tasks\.rt\.columns\.txt"),
        ({"template": "Review:"}, r"tasks\.rt\.template must contain \{text\}"),
        ({"template": "{text} {label}"}, r"tasks\.rt\.template has unknown placeholder \{label\}"),
        ({"template": "{text} {text_b}"}, r"tasks\.rt\.template must use \{text_b\} exactly when columns\.text_b"),
        ({"template": "{text"}, r"tasks\.rt\.template is not a valid template"),
        ({"label_words": {"a": " yes"}}, r"tasks\.rt\.label_words needs at least 2 labels"),
        ({"label_words": {"a": " yes", "b": " yes"}}, r"tasks\.rt\.label_words gives two labels the same word"),
        ({"label_words": {"a": " yes", "b": 3}}, r"tasks\.rt\.label_words\.b must be a non-empty string"),
        ({"label_words": {1: " yes", "1": " no"}}, r"tasks\.rt\.label_words lists label '1' twice"),
        ({"drop_labels": ["fresh"]}, r"tasks\.rt\.drop_labels and tasks\.rt\.label_words share"),
        ({"max_chars": 0}, r"tasks\.rt\.max_chars must be > 0"),
        ({"balance": "yes"}, r"tasks\.rt\.balance must be bool"),
        ({"relabel": {"good": "great"}}, r"tasks\.rt\.relabel\.good: 'great' is not a label of label_words"),
        ({"relabel": {"plot": "fresh"}, "drop_labels": ["plot"]}, r"tasks\.rt\.relabel\.plot is also in drop_labels"),
        ({"negative_pairs": True}, r"tasks\.rt\.negative_pairs needs tasks\.rt\.columns\.text_b"),
        (
            {"negative_pairs": True, "columns": {"text": "a", "text_b": "b", "label": "c"}, "template": "{text}{text_b}"},
            r"tasks\.rt\.label_words must name exactly the labels negative_pairs makes: match, mismatch",
        ),
        (
            {"relabel": {"4": "fresh"}, "binarize": {"threshold": 0, "above": "fresh", "below": "rotten"}},
            r"tasks\.rt\.relabel cannot be used with binarize",
        ),
        ({"splits": {"train": 10, "dev": 2}}, r"missing key tasks\.rt\.splits\.test"),
        ({"splits": {"train": 10, "dev": 2, "test": 2.5}}, r"tasks\.rt\.splits\.test must be int"),
        ({"binarize": {"threshold": 0, "above": "x", "below": "rotten"}}, r"tasks\.rt\.binarize\.above/below"),
        ({"binarize": {"threshold": "0", "above": "fresh", "below": "rotten"}}, r"tasks\.rt\.binarize\.threshold"),
        ({"k_shot": []}, r"tasks\.rt\.k_shot must be a non-empty list of positive integers or 'all'"),
        ({"k_shot": 16}, r"tasks\.rt\.k_shot must be a non-empty list"),
        ({"k_shot": [0]}, r"tasks\.rt\.k_shot: 0 is neither a positive integer nor 'all'"),
        ({"k_shot": ["some"]}, r"tasks\.rt\.k_shot: 'some' is neither"),
        ({"k_shot": [True]}, r"tasks\.rt\.k_shot: True is neither"),
        ({"k_shot": [4, 4]}, r"tasks\.rt\.k_shot lists a value twice"),
        ({"k_shot": [11]}, r"tasks\.rt\.k_shot: k = 11 is larger than the training split \(splits\.train = 10\)"),
        ({"metrics": ["accuracy", "auc"]}, r"tasks\.rt\.metrics: unknown metric 'auc'; allowed: accuracy, macro_f1"),
        ({"metrics": "mcc"}, r"tasks\.rt\.metrics must be a list of metric names"),
    ],
)
def test_bad_keys_name_the_key_path(overrides, message):
    with pytest.raises(PipelineError, match=message):
        make(**overrides)


def test_k_shot_and_metrics_defaults_and_values():
    plain = make()
    assert plain.k_shot == ("all",) and plain.metrics == ("accuracy", "macro_f1")
    spec = make(k_shot=[4, "all", 10], metrics=["mcc"])
    assert spec.k_shot == (4, "all", 10)
    assert spec.metrics == ("accuracy", "macro_f1", "mcc")  # accuracy and macro-F1 are always there


def test_spec_must_be_a_mapping():
    with pytest.raises(PipelineError, match=r"tasks\.rt must be a mapping"):
        TaskSpec.from_params("rt", ["source"])


def test_examples_fill_template_and_normalise_whitespace():
    df = table(review=["  A  great\n\tfilm ", "Dull."], rating=["fresh", " rotten "], other=["x", "y"])
    examples = to_examples(make(), df, "raw.csv")
    assert examples.to_dict("list") == {
        "input": ["Review: A great film\nSentiment:", "Review: Dull.\nSentiment:"],
        "label": [0, 1],
        "key": ["A great film", "Dull."],
    }
    assert examples["label"].dtype == "int64"


def test_yaml_int_labels_match_string_cells():
    spec = make(label_words={0: " normal", 1: " spam"})
    assert list(to_examples(spec, table(review=["a", "b"], rating=["1", "0"]), "f")["label"]) == [1, 0]


def test_drop_labels_removes_rows():
    df = table(review=["a", "b", "c"], rating=["fresh", "plot", "rotten"])
    assert list(to_examples(make(drop_labels=["plot"]), df, "f")["key"]) == ["a", "c"]


def test_unknown_label_names_label_and_key_path():
    df = table(review=["a", "b"], rating=["fresh", "plot"])
    with pytest.raises(PipelineError, match=r"raw\.csv: label 'plot' .*tasks\.rt\.label_words"):
        to_examples(make(), df, "raw.csv")


def test_missing_column_names_column_file_and_key_path():
    with pytest.raises(PipelineError, match=r"raw\.csv: no column 'review' \(params\.yaml: tasks\.rt\.columns\.text;"):
        to_examples(make(), table(text=["a"], rating=["fresh"]), "raw.csv")


def test_binarize_threshold_and_non_numeric():
    spec = make(
        label_words={"positive": " positive", "negative": " negative"},
        binarize={"threshold": 0.0, "above": "positive", "below": "negative"},
    )
    df = table(review=["good", "meh", "bad"], rating=["1.5", "0", "-2"])
    assert to_examples(spec, df, "f").to_dict("list")["label"] == [0, 1]
    with pytest.raises(PipelineError, match=r"amazon\.tsv: column 'rating' has non-numeric value 'n/a'"):
        to_examples(spec, table(review=["x", "y"], rating=["1", "n/a"]), "amazon.tsv")


def test_max_chars_cuts_at_word_boundary():
    spec = make(max_chars=12)
    df = table(
        review=["short one", "the quick brown fox", "abcdefghijklmnopq", "twelve chars ok"], rating=["fresh"] * 4
    )
    keys = to_examples(spec, df, "f")["key"].tolist()
    assert keys == ["short one", "the quick", "abcdefghijkl", "twelve chars"]


def test_sentence_pairs_use_text_b():
    spec = make(
        columns={"text": "premise", "label": "rating", "text_b": "hypothesis"},
        template="{text}\nQuestion: {text_b}?\nAnswer:",
    )
    df = table(premise=["It  rains."], hypothesis=[" It is wet "], rating=["rotten"])
    examples = to_examples(spec, df, "f")
    assert examples.loc[0, "input"] == "It rains.\nQuestion: It is wet?\nAnswer:"
    assert examples.loc[0, "key"] == "It rains.\tIt is wet"


def test_template_braces_are_escaped_and_values_not_reformatted():
    spec = make(template="{{json}} {text}")
    assert to_examples(spec, table(review=["{text}"], rating=["fresh"]), "f").loc[0, "input"] == "{json} {text}"



def test_relabel_merges_raw_classes_after_dropping():
    spec = make(relabel={"great": "fresh", "good": "fresh"}, drop_labels=["plot"])
    df = table(review=["a", "b", "c", "d"], rating=["great", "plot", "good", "rotten"])
    examples = to_examples(spec, df, "f")
    assert list(examples["key"]) == ["a", "c", "d"] and list(examples["label"]) == [0, 0, 1]
