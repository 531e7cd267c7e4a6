"""Prepared datasets: cleaning counts, seeded disjoint splits, atomic writes, loading, and the data@ stage."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pandas as pd
import pytest
import yaml
from tiny import full_params

from pipeline.data.prepare import prepare_task
from pipeline.data.prepared import TaskInfo, load_prepared, shared_texts
from pipeline.errors import PipelineError
from pipeline.config.tasks import TaskSpec
from stages import prepare as stage



def write_raw(folder: Path, rows: int = 60) -> None:
    """``rows`` distinct reviews plus 3 exact duplicates (after whitespace), 2 empty texts and 4 'plot' rows."""
    texts = [f"review number {i}" for i in range(rows)] + ["review  number 0", " review number 1", "review number 2"]
    labels = ["fresh" if i % 3 else "rotten" for i in range(rows)] + ["rotten", "fresh", "fresh"]
    texts += ["", "   "] + [f"plot {i}" for i in range(4)]
    labels += ["fresh", "rotten"] + ["plot"] * 4
    pd.DataFrame({"text": texts, "category": labels}).to_csv(folder / "raw.csv", index=False)


def spec_dict(**overrides: object) -> dict:
    spec = {
        "source": {"kind": "file", "path": "raw.csv", "format": "csv"},
        "columns": {"text": "text", "label": "category"},
        "template": "Review: {text}\nSentiment:",
        "label_words": {"fresh": " positive", "rotten": " negative"},
        "drop_labels": ["plot"],
        "splits": {"train": 30, "dev": 10, "test": 8},
    }
    return {**spec, **overrides}


def prepare(tmp_path: Path, seed: int = 0, name: str = "rt", **overrides: object) -> TaskInfo:
    return prepare_task(TaskSpec.from_params(name, spec_dict(**overrides)), tmp_path / "out" / name, seed, tmp_path)


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    write_raw(tmp_path)
    return tmp_path


def inputs(dataset, split: str) -> list[str]:
    return list(dataset[split]["input"])


def test_sizes_counts_and_disjoint_splits(raw):
    info = prepare(raw)
    dataset, loaded = load_prepared(raw / "out" / "rt")
    assert loaded == info
    assert info.sizes == {"train": 30, "dev": 10, "test": 8}
    assert info.dropped == {"other_labels": 4, "empty": 2, "duplicates": 3}
    assert {split: len(dataset[split]["input"]) for split in dataset} == info.sizes
    assert {split: sum(counts.values()) for split, counts in info.label_counts.items()} == info.sizes
    # On disk, a DatasetDict as datasets saves it; load_prepared reads it with pyarrow alone, to the same columns.
    saved = datasets.load_from_disk(str(raw / "out" / "rt" / "dataset"))
    assert saved["train"].features["label"].dtype == "int64" and saved["train"].features["input"].dtype == "string"
    assert {split: saved[split].to_dict() for split in saved} == dataset
    splits = [set(inputs(dataset, split)) for split in ("train", "dev", "test")]
    assert not (splits[0] & splits[1] or splits[0] & splits[2] or splits[1] & splits[2])
    assert all(len(split) == size for split, size in zip(splits, (30, 10, 8), strict=True))
    on_disk = json.loads((raw / "out" / "rt" / "task.json").read_text())
    assert on_disk["labels"] == ["fresh", "rotten"] and on_disk["label_words"] == [" positive", " negative"]
    assert on_disk["source_sha256"] == info.source_sha256 and len(info.source_sha256) == 64


def test_train_takes_the_rest_when_smaller_than_asked(raw):
    info = prepare(raw, splits={"train": 1000, "dev": 10, "test": 8})
    assert info.sizes == {"train": 60 - 18, "dev": 10, "test": 8}


def test_same_seed_same_splits_other_seed_differs(raw):
    prepare(raw, seed=3, name="a")
    prepare(raw, seed=3, name="b")
    prepare(raw, seed=4, name="c")
    a, b, c = (load_prepared(raw / "out" / name)[0] for name in "abc")
    assert all(inputs(a, split) == inputs(b, split) for split in ("train", "dev", "test"))
    assert inputs(a, "test") != inputs(c, "test")
    assert list(a["train"]["label"]) == list(b["train"]["label"])


def test_growing_train_keeps_dev_and_test(raw):
    prepare(raw, name="small", splits={"train": 5, "dev": 10, "test": 8})
    prepare(raw, name="big", splits={"train": 30, "dev": 10, "test": 8})
    small, big = (load_prepared(raw / "out" / name)[0] for name in ("small", "big"))
    assert inputs(small, "test") == inputs(big, "test") and inputs(small, "dev") == inputs(big, "dev")
    assert inputs(small, "train") == inputs(big, "train")[:5]


def test_not_enough_examples_names_splits(raw):
    with pytest.raises(PipelineError, match=r"tasks\.rt\.splits: only 60 usable examples"):
        prepare(raw, splits={"train": 10, "dev": 30, "test": 29})


def test_label_that_never_occurs_names_label_words(raw):
    words = {"fresh": " positive", "rotten": " negative", "meh": " neutral"}
    with pytest.raises(PipelineError, match=r"label 'meh' of params\.yaml: tasks\.rt\.label_words never occurs"):
        prepare(raw, label_words=words)


def test_failed_prepare_leaves_existing_output_untouched(raw):
    prepare(raw)
    out = raw / "out" / "rt"
    before = {path.relative_to(out): path.read_bytes() for path in out.rglob("*") if path.is_file()}
    with pytest.raises(PipelineError, match=r"label 'plot'"):
        prepare(raw, drop_labels=[])
    after = {path.relative_to(out): path.read_bytes() for path in out.rglob("*") if path.is_file()}
    assert after == before
    assert sorted(path.name for path in (raw / "out").iterdir()) == ["rt"]  # no temp folder left behind


def test_failure_while_writing_removes_temp_and_keeps_old(raw, monkeypatch):
    prepare(raw)
    old_info = (raw / "out" / "rt" / "task.json").read_text()

    def disk_full(self: TaskInfo) -> str:
        raise OSError("disk full")

    monkeypatch.setattr(TaskInfo, "to_json", disk_full)
    with pytest.raises(OSError, match="disk full"):
        prepare(raw, seed=9)
    assert (raw / "out" / "rt" / "task.json").read_text() == old_info
    assert sorted(path.name for path in (raw / "out").iterdir()) == ["rt"]


def test_rerun_replaces_output(raw):
    prepare(raw, seed=1)
    first = load_prepared(raw / "out" / "rt")[0]
    prepare(raw, seed=2)
    second = load_prepared(raw / "out" / "rt")[0]
    assert inputs(first, "test") != inputs(second, "test")


def test_a_state_file_naming_a_file_outside_its_split_is_refused(raw):
    prepare(raw)
    state = raw / "out" / "rt" / "dataset" / "train" / "state.json"
    content = json.loads(state.read_text())
    content["_data_files"][0]["filename"] = "../dev/" + content["_data_files"][0]["filename"]
    state.write_text(json.dumps(content))
    with pytest.raises(PipelineError, match=r"train/state.json names '\.\./dev/.*', not a file in its folder"):
        load_prepared(raw / "out" / "rt")


def test_load_prepared_missing_says_how_to_make_it(tmp_path):
    with pytest.raises(PipelineError, match=r"prepared data not found; run `dvc repro data@trec`"):
        load_prepared(tmp_path / "trec")


# ------------------------------------------------------------------------------------------------- the stage


def test_stage_main_prepares_named_task(raw, monkeypatch):
    params = full_params({"rt": spec_dict(), "rt_b": spec_dict(), "rt_c": spec_dict()}, ["rt", "rt_b"], ["rt_c"])
    params["seed"] = 0
    (raw / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(raw)
    summary = stage.main(["rt"])
    assert summary == (
        "rt: 30/10/8 train/dev/test examples, 2 labels -> data/prepared/rt;"
        " rows left out: 4 other_labels, 2 empty, 3 duplicates"
    )
    assert load_prepared(raw / "data" / "prepared" / "rt")[1].sizes["train"] == 30
    with pytest.raises(PipelineError, match=r"no task tasks\.nope \(known: rt, rt_b, rt_c\)"):
        stage.main(["nope"])


def test_shared_texts_counts_texts_two_tasks_have_in_common(raw):
    prepare(raw, name="first")
    prepare(raw, name="second")  # same raw rows and seed: every kept text is shared
    first = load_prepared(raw / "out" / "first")[0]
    total = sum(len(split["key"]) for split in first.values())
    assert shared_texts(raw / "out" / "first", raw / "out" / "second") == total > 0


def test_balance_samples_every_label_down_to_the_rarest(raw):
    # 63 deduplicated reviews: 20 rotten (i % 3 == 0) and 40 fresh, less 3 duplicates -> 20 rotten, 40 fresh
    info = prepare(raw, balance=True, splits={"train": 1000, "dev": 10, "test": 8})
    assert info.dropped["balance"] == 20
    totals = {label: sum(info.label_counts[split][label] for split in info.sizes) for label in ("fresh", "rotten")}
    assert totals == {"fresh": 20, "rotten": 20}
    first = inputs(load_prepared(raw / "out" / "rt")[0], "train")
    prepare(raw, balance=True, splits={"train": 1000, "dev": 10, "test": 8})
    assert inputs(load_prepared(raw / "out" / "rt")[0], "train") == first  # seeded: the same sample every time
    assert "balance" not in prepare(raw).dropped  # off by default


def pair_spec(path: str, splits: dict[str, int]) -> TaskSpec:
    """A (line, reply) pair task whose labels negative_pairs makes."""
    spec = {
        "source": {"kind": "file", "path": path, "format": "csv"},
        "columns": {"text": "line", "text_b": "reply", "label": "is_reply"},
        "template": "{text}\nReply: {text_b}\nIs that the reply?",
        "label_words": {"match": " yes", "mismatch": " no"},
        "negative_pairs": True,
        "splits": splits,
    }
    return TaskSpec.from_params("dialog", spec)


def test_negative_pairs_label_half_the_real_pairs_with_another_rows_text(tmp_path):
    rows = 200
    pd.DataFrame(
        {"line": [f"line {i}" for i in range(rows)], "reply": [f"reply {i}" for i in range(rows - 2)] + ["ok"] * 2}
    ).to_csv(tmp_path / "pairs.csv", index=False)
    prepare_task(pair_spec("pairs.csv", {"train": 1000, "dev": 10, "test": 10}), tmp_path / "out", 0, tmp_path)
    dataset, info = load_prepared(tmp_path / "out")
    pairs = [tuple(key.split("\t")) for split in dataset.values() for key in split["key"]]
    labels = [label for split in dataset.values() for label in split["label"]]
    assert len(pairs) == rows and len({line for line, _ in pairs}) == rows  # every line once
    for (line, reply), label in zip(pairs, labels, strict=True):
        own = f"reply {line.split()[1]}" if int(line.split()[1]) < rows - 2 else "ok"
        assert label == (0 if reply == own else 1)  # labels index label_words: match 0, mismatch 1
    # Half were given another row's reply; "ok" passed between the two "ok" rows would stay a match.
    assert 98 <= labels.count(1) <= 100


def test_negative_pairs_refuses_to_overwrite_a_column(tmp_path):
    pd.DataFrame({"line": ["a", "b"], "reply": ["c", "d"], "is_reply": ["x", "y"]}).to_csv(tmp_path / "p.csv")
    with pytest.raises(PipelineError, match=r"already has a column 'is_reply'.*tasks\.dialog\.negative_pairs"):
        prepare_task(pair_spec("p.csv", {"train": 2, "dev": 1, "test": 1}), tmp_path / "out", 0, tmp_path)
