"""Hub sources without a network: local folders in the Hub layout, read with HF_HUB_OFFLINE / HF_DATASETS_OFFLINE on.

``datasets.load_dataset(<folder>)`` and ``from_pretrained(<folder>)`` take a local folder exactly as they take a Hub
id, so these tests exercise the same calls an online user's params make (conftest.py sets HF_HUB_OFFLINE before
anything imports huggingface_hub).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.model.backbone import load_backbone
from pipeline.model.materialise import materialise_backbone
from pipeline.errors import PipelineError
from pipeline.config.schema import check_backbone_spec
from pipeline.config.sources import check_source
from pipeline.data.sources import load_raw_table, table_sha256
from source_kinds import offline  # noqa: F401 (the fixture every test here uses)
from tiny import save_tiny_backbone

WHERE = "tasks.t.source"
pytestmark = pytest.mark.usefixtures("offline")


def write_hub_dataset(folder: Path, rows: int = 6) -> Path:
    """A dataset folder as on the Hub: data/<split>.csv files that `load_dataset(folder)` reads."""
    (folder / "data").mkdir(parents=True)
    for split, count in (("train", rows), ("test", 2)):
        lines = ["text,label"] + [f"{split} text number {i},{i % 2}" for i in range(count)]
        (folder / "data" / f"{split}.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def hub(folder: Path, **extra: str) -> dict:
    return {"kind": "hub", "dataset": str(folder), "split": "train", **extra}


def test_a_hub_split_is_a_table_of_strings_with_a_content_hash(tmp_path):
    folder = write_hub_dataset(tmp_path / "ds")
    table, digest = load_raw_table(hub(folder), WHERE, tmp_path)
    assert list(table.columns) == ["text", "label"] and len(table) == 6
    assert table["label"].tolist() == ["0", "1"] * 3  # integer class ids, as strings like every other kind
    assert digest == table_sha256(table) and len(digest) == 64
    assert load_raw_table(hub(folder, split="train[:4]"), WHERE, tmp_path)[1] != digest  # other rows, other hash


def test_same_content_same_hash_wherever_it_is_stored(tmp_path):
    first = load_raw_table(hub(write_hub_dataset(tmp_path / "a")), WHERE, tmp_path)[1]
    assert load_raw_table(hub(write_hub_dataset(tmp_path / "b")), WHERE, tmp_path)[1] == first


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ({"kind": "hub", "dataset": "x"}, r"missing key tasks\.t\.source\.split"),
        ({"kind": "hub", "dataset": "x", "split": "train", "format": "csv"}, r"unknown key tasks\.t\.source\.format"),
        ({"kind": "hub", "dataset": "", "split": "train"}, r"tasks\.t\.source\.dataset must not be empty"),
        ({"kind": "hub", "dataset": "x", "split": "train", "revision": 3}, r"tasks\.t\.source\.revision must be str"),
    ],
)
def test_hub_keys_are_checked_before_anything_loads(source, message):
    with pytest.raises(PipelineError, match=message):
        check_source(source, WHERE)


def test_unknown_split_and_missing_dataset_are_one_line_errors_naming_the_key(tmp_path):
    folder = write_hub_dataset(tmp_path / "ds")
    unknown_split = r"^hub:.*\[validation\]: Unknown split .*\(params\.yaml: tasks\.t\.source\)$"
    with pytest.raises(PipelineError, match=unknown_split):
        load_raw_table(hub(folder, split="validation"), WHERE, tmp_path)
    missing = r"^hub:someone/no-such-set\[train\]: cannot load .*\(params\.yaml: tasks\.t\.source\.dataset\)$"
    with pytest.raises(PipelineError, match=missing):
        load_raw_table({"kind": "hub", "dataset": "someone/no-such-set", "split": "train"}, WHERE, tmp_path)


def test_backbone_hub_keys(tmp_path):
    spec = {"name": "t5", "kind": "seq2seq", "source": {"kind": "hub", "model": "t5-base"}}
    check_backbone_spec(spec)
    check_backbone_spec({**spec, "source": {"kind": "hub", "model": "t5-base", "revision": "main"}})
    with pytest.raises(PipelineError, match=r"unknown key backbone\.source\.format"):
        check_backbone_spec({**spec, "source": {"kind": "hub", "model": "t5-base", "format": "hf"}})
    with pytest.raises(PipelineError, match=r"backbone\.source\.model must not be empty"):
        check_backbone_spec({**spec, "source": {"kind": "hub", "model": ""}})


def test_backbone_from_a_hub_layout_folder(tmp_path):
    model = save_tiny_backbone(tmp_path / "tiny-t5", "seq2seq")
    spec = {"name": "tiny-t5", "kind": "seq2seq", "source": {"kind": "hub", "model": str(model), "revision": "main"}}
    info = materialise_backbone(spec, tmp_path / "backbone", tmp_path)
    assert (info.kind, info.hidden_size) == ("seq2seq", 32)
    assert load_backbone(tmp_path / "backbone").info == info


def test_backbone_that_cannot_be_loaded_names_the_model_key(tmp_path):
    spec = {"name": "x", "kind": "causal", "source": {"kind": "hub", "model": "someone/no-such-model"}}
    with pytest.raises(PipelineError, match=r"^params\.yaml: backbone\.source\.model: cannot load someone/no-such"):
        materialise_backbone(spec, tmp_path / "backbone", tmp_path)
    assert not (tmp_path / "backbone").exists()
