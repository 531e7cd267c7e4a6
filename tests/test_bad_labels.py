"""Broken labels and texts through the data stage (issue 14): each case prepares the right examples, or fails with
one line naming the file and the key to set and writes nothing. Rows left out are counted on the summary line.

Label rules (README, The params): surrounding whitespace never counts, case always does (a near miss names the
relabel or drop_labels entry to add), and a float that equals an integer label (``1.0``) is that label.
"""

from __future__ import annotations

import io
import re
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from source_kinds import folder_of, hub_dataset, one_file
from source_kinds import offline  # noqa: F401 (a fixture the Hub cases use)
from tiny import full_params

from pipeline.config.tasks import TaskSpec
from pipeline.data.prepare import prepare_task
from pipeline.data.prepared import load_prepared
from pipeline.errors import PipelineError
from pipeline.flows.stage import run_stage
from stages import prepare as stage

TEXTS = [f"review number {i}" for i in range(12)]
LABELS = ["pos", "neg"] * 6
WORDS = {"pos": " positive", "neg": " negative"}


def spec_dict(path: str = "raw.csv", fmt: str = "csv", **overrides: Any) -> dict[str, Any]:
    spec = {
        "source": {"kind": "file", "path": path, "format": fmt},
        "columns": {"text": "text", "label": "label"},
        "template": "Review: {text}\nSentiment:",
        "label_words": WORDS,
        "splits": {"train": 8, "dev": 2, "test": 2},
    }
    return {**spec, **overrides}


def csv_of(**columns: list[Any]) -> bytes:
    return pd.DataFrame(columns).to_csv(index=False).encode()


def parquet_of(**columns: list[Any]) -> bytes:
    buffer = io.BytesIO()
    pd.DataFrame(columns).to_parquet(buffer)
    return buffer.getvalue()


def labels_of(tmp_path: Path, name: str = "t") -> list[str]:
    """Every prepared example's raw label (through task.json's label list), all splits."""
    dataset, info = load_prepared(tmp_path / "out" / name)
    return sorted(info.labels[label] for split in dataset.values() for label in split["label"])


WHERE = r"params\.yaml: tasks\.t"
# (case, file bytes, file name, spec overrides, the labels prepared (sorted) or the error's regex after the file name)
CASES: list[tuple[str, bytes, str, dict[str, Any], list[str] | str]] = [
    ("labels with stray whitespace", csv_of(text=TEXTS, label=[f" {label}\t" for label in LABELS]), "raw.csv", {},
     sorted(LABELS)),
    ("label case differs", csv_of(text=TEXTS, label=["POS", "neg"] * 6), "raw.csv", {},
     rf"label 'POS' in column 'label' is not in {WHERE}\.label_words, but 'pos' is \(labels match"
     rf" case-sensitively\); set tasks\.t\.relabel: \{{POS: pos\}}$"),
    ("label case mapped with relabel", csv_of(text=TEXTS, label=["POS", "neg"] * 6), "raw.csv",
     {"relabel": {"POS": "pos"}}, sorted(LABELS)),
    ("dropped label's case differs", csv_of(text=TEXTS + ["a plot"], label=LABELS + ["Plot"]), "raw.csv",
     {"drop_labels": ["plot"]}, rf"label 'Plot' .* not in {WHERE}\.drop_labels, but 'plot' is .*set tasks\.t\.drop_labels"),
    ("empty labels", csv_of(text=TEXTS + ["x", "y"], label=LABELS + ["", " "]), "raw.csv", {},
     rf"2 rows have no label in column 'label' \(the first is data row 13\); add \"\" to {WHERE}\.drop_labels"),
    ("empty labels dropped", csv_of(text=TEXTS + ["x", "y"], label=LABELS + ["", " "]), "raw.csv",
     {"drop_labels": [""]}, sorted(LABELS)),
    ("no label column", csv_of(text=TEXTS, sentiment=LABELS), "raw.csv", {},
     rf"no column 'label' \({WHERE}\.columns\.label; the file has 'text', 'sentiment'\)$"),
    ("label column's case differs", csv_of(text=TEXTS, Label=LABELS), "raw.csv", {},
     rf"no column 'label', but there is 'Label' \(names match exactly\); set {WHERE}\.columns\.label$"),
    ("numbers as labels", csv_of(text=TEXTS, label=[1, 0] * 6), "raw.csv", {"label_words": {0: " no", 1: " yes"}},
     ["0"] * 6 + ["1"] * 6),
    ("integer labels written as floats", csv_of(text=TEXTS, label=["1.0", "0.0"] * 6), "raw.csv",
     {"label_words": {0: " no", 1: " yes"}}, ["0"] * 6 + ["1"] * 6),
    ("parquet integer labels with a missing one", parquet_of(text=TEXTS + ["x"], label=[1, 0] * 6 + [None]),
     "raw.parquet", {"label_words": {0: " no", 1: " yes"}},
     rf"1 rows have no label in column 'label' \(the first is data row 13\); add \"\" to {WHERE}\.drop_labels"),
    ("a float that is no integer label", csv_of(text=TEXTS, label=["1.5", "0"] * 6), "raw.csv",
     {"label_words": {0: " no", 1: " yes"}}, rf"label '1\.5' in column 'label' is not in {WHERE}\.label_words"),
    ("binarize meets an empty value", csv_of(text=TEXTS + ["x"], label=["0.5", "-0.5"] * 6 + [""]), "raw.csv",
     {"binarize": {"threshold": 0, "above": "pos", "below": "neg"}},
     rf"column 'label' has non-numeric value '' \(data row 13\); {WHERE}\.binarize needs numbers .*drop_labels"),
    ("text column empty in every row", csv_of(text=[""] * 12, label=LABELS), "raw.csv", {},
     rf"column 'text' is empty in all 12 rows \({WHERE}\.columns\.text\)$"),
    ("text_b column empty in every row", csv_of(text=TEXTS, reply=[" "] * 12, label=LABELS), "raw.csv",
     {"columns": {"text": "text", "text_b": "reply", "label": "label"}, "template": "{text} / {text_b}"},
     rf"column 'reply' is empty in all 12 rows \({WHERE}\.columns\.text_b\)$"),
    ("one class only", csv_of(text=TEXTS, label=["pos"] * 12), "raw.csv", {},
     rf"label 'neg' of {WHERE}\.label_words never occurs in the data$"),
    ("every row's label dropped", csv_of(text=TEXTS, label=["plot"] * 12), "raw.csv", {"drop_labels": ["plot"]},
     r"no usable rows: all 12 were left out \(12 other_labels\)$"),
    ("most texts empty", csv_of(text=TEXTS + [""] * 20, label=LABELS + ["pos"] * 20), "raw.csv", {},
     sorted(LABELS)),
]
# Where each kind names the file in its errors.
NAMED = {"file": lambda tmp_path, name: re.escape(str(tmp_path / name)), "package": lambda _, name: rf"pkg/data/{name}"}


def outcome(spec: TaskSpec, tmp_path: Path, expect: list[str] | str, file_pattern: str) -> None:
    """Prepare ``spec``: the labels must be ``expect``, or the one-line error must match it and nothing be written."""
    out = tmp_path / "out" / "t"
    if isinstance(expect, list):
        prepare_task(spec, out, 0, tmp_path)
        assert labels_of(tmp_path) == expect
        return
    with pytest.raises(PipelineError) as caught:
        prepare_task(spec, out, 0, tmp_path)
    message = str(caught.value)
    assert "\n" not in message and re.search(file_pattern + ": " + expect, message), message
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())  # nothing written


@pytest.mark.parametrize("kind", ["file", "package"])
@pytest.mark.parametrize(("case", "data", "name", "overrides", "expect"), CASES, ids=[c[0] for c in CASES])
def test_labels_and_texts(tmp_path, monkeypatch, kind, case, data, name, overrides, expect):
    fmt = name.rsplit(".", 1)[1]
    source = one_file(kind, tmp_path, monkeypatch, name, data, format=fmt)
    spec = TaskSpec.from_params("t", {**spec_dict(name, **overrides), "source": source})
    outcome(spec, tmp_path, expect, NAMED[kind](tmp_path, name))


@pytest.mark.parametrize(
    ("case", "labels", "words", "expect"),
    [
        ("class ids", [1, 0] * 6, {0: " no", 1: " yes"}, ["0"] * 6 + ["1"] * 6),
        ("class ids with a missing one", [1, 0] * 6 + [None], {0: " no", 1: " yes"}, r"1 rows have no label"),
        ("label case differs", ["Pos", "neg"] * 6, WORDS, r"label 'Pos' .*set tasks\.t\.relabel: \{Pos: pos\}$"),
    ],
)
def test_hub_labels(tmp_path, offline, case, labels, words, expect):
    texts = TEXTS + ["x"] * (len(labels) - len(TEXTS))
    source = hub_dataset(tmp_path, "train.parquet", parquet_of(text=texts, label=labels))
    spec = TaskSpec.from_params("t", {**spec_dict(label_words=words), "source": source})
    outcome(spec, tmp_path, expect, r"^hub:.*ds\[train\]")


@pytest.mark.parametrize(
    ("case", "folders", "expect"),
    [
        ("folder names as labels", ["pos", "neg"], ["neg"] * 6 + ["pos"] * 6),
        ("a folder name's case differs", ["pos", "NEG"], r"label 'NEG' .*but 'neg' is .*set tasks\.t\.relabel"),
        ("one folder only", ["pos", "pos"], r"label 'neg' of params\.yaml: tasks\.t\.label_words never occurs"),
    ],
)
@pytest.mark.parametrize("kind", ["folder", "package"])
def test_folder_labels(tmp_path, monkeypatch, kind, case, folders, expect):
    files = {f"{folders[i % 2]}/{i}.txt": text.encode() for i, text in enumerate(TEXTS)}
    source = folder_of(kind, tmp_path, monkeypatch, files)
    spec = TaskSpec.from_params("t", {**spec_dict(), "source": source})
    outcome(spec, tmp_path, expect, r"(corpus|pkg/data/corpus/)")


# ------------------------------------------------------------------------------------------------- the stage


def stage_repo(tmp_path: Path, monkeypatch, data: bytes, name: str = "raw.csv", **overrides: Any) -> None:
    (tmp_path / name).write_bytes(data)
    tasks = {"t": spec_dict(name, **overrides), "s1": spec_dict(name), "s2": spec_dict(name)}
    params = full_params(tasks, ["s1", "s2"], ["t"])
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize(
    ("case", "data", "error"),
    [
        ("cp1252 file", "text,label\n\u201chi\u201d,pos\n".encode("cp1252"),
         r"raw\.csv: not valid utf-8 text \(byte 0x93 on line 2\); set params\.yaml: tasks\.t\.source\.encoding"),
        ("ragged csv", b"text,label\na,pos\nb,neg,x\n", r"raw\.csv: line 3 has 3 fields, the header has 2"),
        ("truncated gzip", b"\x1f\x8b\x08\x00", r"raw\.csv: truncated or corrupt gzip data .*tasks\.t\.source\.path"),
    ],
)
def test_failed_stage_prints_one_line_exits_1_and_writes_nothing(tmp_path, monkeypatch, capsys, case, data, error):
    stage_repo(tmp_path, monkeypatch, data)
    monkeypatch.setattr(sys, "argv", ["stages/prepare.py", "t"])
    with pytest.raises(SystemExit) as exit_status:
        run_stage("data@t", stage.main)
    assert exit_status.value.code == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: data@t: ") and re.search(error, lines[0]), lines
    assert not (tmp_path / "data").exists()


def test_summary_line_says_how_many_rows_were_left_out_and_why(tmp_path, monkeypatch):
    texts = TEXTS + [""] * 20 + TEXTS[:5] + [f"plot {i}" for i in range(3)]
    stage_repo(tmp_path, monkeypatch, csv_of(text=texts, label=LABELS + ["pos"] * 25 + ["plot"] * 3),
               drop_labels=["plot"])  # fmt: skip
    summary = stage.main(["t"])
    assert summary.endswith("; rows left out: 3 other_labels, 20 empty, 5 duplicates"), summary


def test_skipped_lines_are_counted(tmp_path, monkeypatch):
    lines = [f"{label}: {text}" for text, label in zip(TEXTS, LABELS, strict=True)] + ["# a comment"] * 30
    source = {"kind": "file", "path": "raw.txt", "format": "lines", "pattern": r"^(?P<label>\w+): (?P<text>.*)$",
              "skip_unmatched": True}  # fmt: skip
    stage_repo(tmp_path, monkeypatch, "\n".join(lines).encode(), name="raw.txt", source=source)
    assert stage.main(["t"]).endswith("; rows left out: 30 unmatched_lines")
    assert load_prepared(tmp_path / "data" / "prepared" / "t")[1].dropped["unmatched_lines"] == 30
