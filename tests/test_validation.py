"""Bad input gets one clear line naming the key or the file, a non-zero exit, and no output left behind."""

from __future__ import annotations

import copy
import os
import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from pipeline.store.tensors import load_tensors, save_tensors
from pipeline.errors import PipelineError
from pipeline.methods import MethodContext
from pipeline.methods.mpt import build as build_mpt
from pipeline.config.load import read_params
from pipeline.config.schema import Params, load_checked_params, validate
from pipeline.config.params import ModelSettings, StepSettings
from stages import prepare as prepare_stage
from tiny import full_params, tiny_backbone

REPO = Path(__file__).resolve().parents[1]


def csv_task(path: str = "raw.csv", **overrides) -> dict:
    spec = {
        "source": {"kind": "file", "path": path, "format": "csv"},
        "columns": {"text": "text", "label": "label"},
        "template": "{text} sentiment :",
        "label_words": {"good": " positive", "bad": " negative"},
        "splits": {"train": 20, "dev": 4, "test": 4},
    }
    return {**spec, **overrides}


def base_params() -> dict:
    return full_params({"src_a": csv_task(), "src_b": csv_task(), "tgt": csv_task()}, ["src_a", "src_b"], ["tgt"])


def set_key(params: dict, path: str, value) -> dict:
    node = params
    *parents, last = path.split(".")
    for part in parents:
        node = node[part]
    node[last] = value
    return params


def drop_key(params: dict, path: str) -> dict:
    node = params
    *parents, last = path.split(".")
    for part in parents:
        node = node[part]
    del node[last]
    return params


# (description, how to break valid params, a regex the one-line message must match: the key path named)
PARAMS_CASES = [
    # A typo in any section fails with the key path named (it would otherwise be ignored for the default).
    ("typo at the top level", lambda p: set_key(p, "seeed", 1), r"unknown key params\.seeed;"),
    ("typo in model", lambda p: set_key(p, "model.batch_sise", 4), r"unknown key model\.batch_sise;"),
    ("typo in source", lambda p: set_key(p, "source.teacher_example", 8), r"unknown key source\.teacher_example;"),
    ("typo in distill", lambda p: set_key(p, "distill.lamda", 0.5), r"unknown key distill\.lamda;"),
    ("typo in adapt", lambda p: set_key(p, "adapt.cpt_epsilom", 0.2), r"unknown key adapt\.cpt_epsilom;"),
    ("typo in backbone", lambda p: set_key(p, "backbone.knid", "causal"), r"unknown key backbone\.knid;"),
    ("typo in backbone.source", lambda p: set_key(p, "backbone.source.sha265", "x"), r"backbone\.source\.sha265"),
    ("typo in a task", lambda p: set_key(p, "tasks.tgt.k_shots", [4]), r"unknown key tasks\.tgt\.k_shots;"),
    ("typo in a task's source", lambda p: set_key(p, "tasks.tgt.source.formt", "csv"), r"tasks\.tgt\.source\.formt"),
    ("typo in a task's columns", lambda p: set_key(p, "tasks.tgt.columns.txt", "a"), r"tasks\.tgt\.columns\.txt"),
    ("typo in a task's splits", lambda p: set_key(p, "tasks.tgt.splits.valid", 2), r"tasks\.tgt\.splits\.valid"),
    ("typo in source_teachers", lambda p: set_key(p, "source_teachers", {"src_c": "x"}), r"source_teachers\.src_c"),
    ("distill_from not a path", lambda p: set_key(p, "distill_from", ""), r"params\.yaml: distill_from must be the path"),
    ("model not a mapping", lambda p: set_key(p, "model", 4), r"params\.yaml: model must be a mapping"),
    ("unknown method", lambda p: set_key(p, "adapt.methods", ["mpt", "lora"]), r"adapt\.methods.*'lora'.*allowed: pt, mpt"),
    ("method listed twice", lambda p: set_key(p, "adapt.methods", ["pt", "pt"]), r"adapt\.methods lists a method twice"),
    ("no methods", lambda p: set_key(p, "adapt.methods", []), r"adapt\.methods must list at least one"),
    ("unknown task source kind", lambda p: set_key(p, "tasks.src_a.source.kind", "ftp"), r"tasks\.src_a\.source\.kind"),
    ("unknown task format", lambda p: set_key(p, "tasks.src_a.source.format", "xlsx"), r"tasks\.src_a\.source\.format"),
    ("unknown backbone kind", lambda p: set_key(p, "backbone.kind", "encoder"), r"backbone\.kind must be one of causal, seq2seq"),
    ("unknown backbone source kind", lambda p: set_key(p, "backbone.source.kind", "s3"), r"backbone\.source\.kind"),
    ("bad backbone format", lambda p: set_key(p, "backbone.source.format", "hf"), r"backbone\.source\.format must be one of gguf"),
    ("task both source and target", lambda p: set_key(p, "target_tasks", ["src_a"]), r"'src_a' is in both source_tasks and target_tasks"),
    ("rank zero", lambda p: set_key(p, "distill.rank", 0), r"distill\.rank must be > 0"),
    ("rank negative", lambda p: set_key(p, "distill.rank", -2), r"distill\.rank must be > 0"),
    ("rank above prompt length", lambda p: set_key(p, "distill.rank", 21), r"distill\.rank must be <= 20"),
    ("negative learning rate", lambda p: set_key(p, "source.lr", -0.1), r"source\.lr must be > 0"),
    ("zero learning rate", lambda p: set_key(p, "adapt.factor_lr", 0), r"adapt\.factor_lr must be > 0"),
    ("zero steps", lambda p: set_key(p, "adapt.steps", 0), r"adapt\.steps must be > 0"),
    ("negative steps", lambda p: set_key(p, "distill.steps", -5), r"distill\.steps must be > 0"),
    ("steps not an integer", lambda p: set_key(p, "source.steps", 2.5), r"source\.steps must be int"),
    ("warmup not below steps", lambda p: set_key(p, "adapt.warmup_steps", 60), r"adapt\.warmup_steps must be in \[0, adapt\.steps\)"),
    ("zero prompt length", lambda p: set_key(p, "model.prompt_length", 0), r"model\.prompt_length must be > 0"),
    ("negative lambda", lambda p: set_key(p, "distill.lambda", -1), r"distill\.lambda must be >= 0"),
    ("zero temperature", lambda p: set_key(p, "distill.temperature", 0), r"distill\.temperature must be > 0"),
    ("fewer than two source tasks", lambda p: set_key(p, "source_tasks", ["src_a"]), r"source_tasks needs at least 2 tasks"),
    ("source task listed twice", lambda p: set_key(p, "source_tasks", ["src_a", "src_a"]), r"source_tasks lists 'src_a' twice"),
    ("undefined target", lambda p: set_key(p, "target_tasks", ["nope"]), r"target_tasks names 'nope'"),
    ("unknown top-level key", lambda p: set_key(p, "epochs", 3), r"unknown key params\.epochs"),
    ("seed not an integer", lambda p: set_key(p, "seed", "zero"), r"params\.seed must be int"),
    ("missing model section", lambda p: drop_key(p, "model"), r"missing key model"),
    ("unknown task key", lambda p: set_key(p, "tasks.tgt.labels", ["a"]), r"unknown key tasks\.tgt\.labels"),
    ("template without text", lambda p: set_key(p, "tasks.tgt.template", "Sentiment:"), r"tasks\.tgt\.template"),
    ("one label only", lambda p: set_key(p, "tasks.tgt.label_words", {"good": " positive"}), r"tasks\.tgt\.label_words"),
    ("zero checkpoint interval", lambda p: set_key(p, "checkpoint_every", 0), r"params\.checkpoint_every must be > 0"),
    ("no seeds", lambda p: set_key(p, "seeds", []), r"seeds must be a non-empty list of integers >= 0"),
    ("seeds not a list", lambda p: set_key(p, "seeds", 3), r"seeds must be a non-empty list"),
    ("negative seed", lambda p: set_key(p, "seeds", [0, -1]), r"seeds must be a non-empty list of integers >= 0"),
    ("seed listed twice", lambda p: set_key(p, "seeds", [1, 1]), r"seeds lists a seed twice"),
    ("missing seeds", lambda p: drop_key(p, "seeds"), r"missing key seeds"),
    ("k_shot on a source task", lambda p: set_key(p, "tasks.src_a.k_shot", [4]), r"tasks\.src_a\.k_shot: 'src_a' is a"),
    ("k_shot above the split", lambda p: set_key(p, "tasks.tgt.k_shot", [21]), r"tasks\.tgt\.k_shot: k = 21 is larger"),
    ("unknown metric", lambda p: set_key(p, "tasks.tgt.metrics", ["f2"]), r"tasks\.tgt\.metrics: unknown metric 'f2'"),
    ("decomposition not a bool", lambda p: set_key(p, "distill.decomposition", "no"), r"distill\.decomposition must"),
    ("typo under distill", lambda p: set_key(p, "distill.decompositon", False), r"unknown key distill\.decompositon"),
    ("freeze_shared not a bool", lambda p: set_key(p, "adapt.freeze_shared", 1), r"adapt\.freeze_shared must be bool"),
    ("negative eval_every", lambda p: set_key(p, "adapt.eval_every", -1), r"adapt\.eval_every must be >= 0"),
    ("unknown select rule", lambda p: set_key(p, "adapt.select", "best"), r"adapt\.select must be one of last, best_dev"),
    ("best_dev without a curve", lambda p: set_key(set_key(p, "adapt.eval_every", 0), "adapt.select", "best_dev"),
     r"adapt\.select: best_dev needs a dev curve"),
    ("missing freeze_shared", lambda p: drop_key(p, "adapt.freeze_shared"), r"missing key adapt\.freeze_shared"),
]


def test_the_default_params_are_valid():
    validate(read_params(REPO / "params.yaml"))


def test_at_least_25_cases():
    assert len(PARAMS_CASES) + len(DATA_CASES) + 8 >= 25


@pytest.mark.parametrize("name, breaks, message", PARAMS_CASES, ids=[c[0] for c in PARAMS_CASES])
def test_bad_params_name_the_key(name, breaks, message):
    params = breaks(copy.deepcopy(base_params()))
    with pytest.raises(PipelineError, match=message) as error:
        validate(params)
    assert "\n" not in str(error.value)


def test_duplicate_task_names_are_refused(tmp_path):
    text = (REPO / "params.yaml").read_text(encoding="utf-8")
    text = text.replace("  trec:  # TREC", "  rotten_tomatoes:\n    template: x\n  trec:  # TREC", 1)
    (tmp_path / "params.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(PipelineError, match=r"key 'rotten_tomatoes' is given twice"):
        read_params(tmp_path / "params.yaml")


def test_malformed_yaml_names_the_file_and_line(tmp_path):
    (tmp_path / "params.yaml").write_text("seed: [0\n", encoding="utf-8")
    with pytest.raises(PipelineError, match=r"params\.yaml: not valid YAML at line"):
        load_checked_params(tmp_path / "params.yaml")


# --- data problems, through the data@ stage: nothing is written -----------------------------------------------

GOOD_ROWS = "\n".join(["text,label"] + [f"text number {i} is {'good' if i % 2 else 'bad'},{'good' if i % 2 else 'bad'}" for i in range(40)])


def write(path: Path, content: str | bytes) -> None:
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))


DATA_CASES = [
    ("missing column", GOOD_ROWS.replace("text,label", "body,label", 1), {}, r"raw\.csv: no column 'text' \(params\.yaml: tasks\.tgt\.columns"),
    ("label missing from label words", GOOD_ROWS + "\nanother text,neutral", {}, r"'neutral'.*tasks\.tgt\.label_words"),
    ("empty file", "", {}, r"raw\.csv"),
    ("file of the wrong format", b"\x00\x01PAR1\xff\xfe garbage", {"source": {"kind": "file", "path": "raw.csv", "format": "jsonl"}}, r"raw\.csv"),
    ("splits larger than the data", GOOD_ROWS, {"splits": {"train": 20, "dev": 30, "test": 30}}, r"tasks\.tgt\.splits"),
    ("sha256 pin that does not match", GOOD_ROWS, {"source": {"kind": "file", "path": "raw.csv", "format": "csv", "sha256": "0" * 64}}, r"tasks\.tgt\.source\.sha256.*raw\.csv"),
    ("missing file", None, {}, r"raw\.csv"),
]


def run_prepare(tmp_path: Path, monkeypatch, spec: dict) -> None:
    params = base_params()
    params["tasks"]["tgt"] = spec
    write(tmp_path / "params.yaml", yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    prepare_stage.main(["tgt"])


@pytest.mark.parametrize("name, content, overrides, message", DATA_CASES, ids=[c[0] for c in DATA_CASES])
def test_bad_data_names_the_file_or_key_and_writes_nothing(tmp_path, monkeypatch, name, content, overrides, message):
    if content is not None:
        write(tmp_path / "raw.csv", content)
    with pytest.raises(PipelineError, match=message) as error:
        run_prepare(tmp_path, monkeypatch, csv_task(**overrides))
    assert "\n" not in str(error.value)
    prepared = tmp_path / "data" / "prepared"
    assert not prepared.exists() or not any(p.name == "tgt" for p in prepared.iterdir())


def test_a_failed_prepare_keeps_the_previous_output(tmp_path, monkeypatch):
    write(tmp_path / "raw.csv", GOOD_ROWS)
    run_prepare(tmp_path, monkeypatch, csv_task())
    before = {p: p.read_bytes() for p in (tmp_path / "data/prepared/tgt").rglob("*") if p.is_file()}
    write(tmp_path / "raw.csv", GOOD_ROWS.replace("text,label", "body,label", 1))
    with pytest.raises(PipelineError):
        run_prepare(tmp_path, monkeypatch, csv_task())
    after = {p: p.read_bytes() for p in (tmp_path / "data/prepared/tgt").rglob("*") if p.is_file()}
    assert after == before
    assert [p.name for p in (tmp_path / "data/prepared").iterdir()] == ["tgt"]  # no temp folder left


def test_stage_prints_one_line_and_exits_1_without_traceback(tmp_path):
    params = base_params()
    params["distill"]["rank"] = 0
    write(tmp_path / "params.yaml", yaml.safe_dump(params))
    # As DVC runs it, from the repo root; here from tmp_path, with the repo on the path for `-m stages.prepare`.
    result = subprocess.run(
        [sys.executable, "-m", "stages.prepare", "tgt"], cwd=tmp_path, capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == ["error: data@tgt: params.yaml: distill.rank must be > 0, got 0"]
    assert "Traceback" not in result.stderr and not (tmp_path / "data").exists()


# --- artifacts: corrupt, truncated, made for another backbone, another prompt shape -----------------------------


def saved_artifact(tmp_path: Path, **meta) -> Path:
    path = tmp_path / "prompt.safetensors"
    save_tensors(path, {"prompt": torch.randn(4, 8)}, {"backbone": "abc", "prompt_length": 4, **meta})
    return path


def test_corrupted_safetensors_is_refused(tmp_path):
    path = saved_artifact(tmp_path)
    data = bytearray(path.read_bytes())
    data[10:30] = b"\xff" * 20  # inside the JSON header
    path.write_bytes(bytes(data))
    with pytest.raises(PipelineError, match=r"prompt\.safetensors: corrupt or truncated"):
        load_tensors(path, "source@x")


def test_truncated_safetensors_is_refused(tmp_path):
    path = saved_artifact(tmp_path)
    path.write_bytes(path.read_bytes()[:-17])
    with pytest.raises(PipelineError, match=r"prompt\.safetensors: corrupt or truncated"):
        load_tensors(path, "source@x")


def test_artifact_for_another_backbone_is_refused(tmp_path):
    path = saved_artifact(tmp_path)
    with pytest.raises(PipelineError, match=r"prompt\.safetensors: made for backbone='abc' but this run needs 'xyz'"):
        load_tensors(path, "source@x", expect={"backbone": "xyz"})


def test_missing_artifact_says_which_stage_makes_it(tmp_path):
    with pytest.raises(PipelineError, match=r"not found; it is made by `dvc repro distill`"):
        load_tensors(tmp_path / "shared.safetensors", "distill")


def test_prompt_length_that_does_not_match_p_is_refused(tmp_path):
    backbone = tiny_backbone("causal")
    distill_file = tmp_path / "shared.safetensors"
    shared = {"shared": torch.randn(6, 32), "u": torch.ones(2, 6, 1), "v": torch.ones(2, 1, 32)}
    save_tensors(distill_file, shared, {"backbone": backbone.info.fingerprint})
    ctx = MethodContext(
        backbone, ModelSettings(4, 16, 4, 8), StepSettings(3, 0.1, 0.1, 0), seed=0, distill_file=distill_file
    )
    with pytest.raises(PipelineError, match=r"model\.prompt_length is 4 but .*shared\.safetensors holds a P of length 6"):
        build_mpt(ctx)


def test_label_word_the_tokenizer_cannot_encode():
    with pytest.raises(PipelineError, match=r"tasks\.tgt\.label_words: label word ' zzz' cannot be encoded"):
        tiny_backbone("causal").label_words([" positive", " zzz"], "params.yaml: tasks.tgt.label_words")


def test_package_pin_that_does_not_match(tmp_path, monkeypatch):
    from pipeline.store.wheels import fetch_wheel

    wheels = tmp_path / "cache" / "wheels" / "demo-1.0"
    wheels.mkdir(parents=True)
    (wheels / "demo-1.0-py3-none-any.whl").write_bytes(b"not the pinned bytes")
    monkeypatch.setenv("MPT_CACHE_DIR", str(tmp_path / "cache"))
    pinned = hashlib.sha256(b"the pinned bytes").hexdigest()
    with pytest.raises(PipelineError, match=r"tasks\.x\.source\.sha256 does not match"):
        fetch_wheel("demo", "1.0", pinned, "tasks.x.source")
    assert not (wheels / "demo-1.0-py3-none-any.whl").exists()  # the bad file is not kept


def test_params_are_typed_per_section_and_keep_the_mapping_as_read():
    raw = base_params()
    params = Params.from_dict(raw)
    assert params.raw is raw and params.seed == raw["seed"] and params.seeds == tuple(raw["seeds"])
    assert params.model == ModelSettings(**raw["model"]) and params.adapt.steps == raw["adapt"]["steps"]
    assert params.methods == tuple(raw["adapt"]["methods"]) and params.source_tasks == ("src_a", "src_b")
    assert params.tasks["tgt"].label_column == "label" and params.teacher_examples == raw["source"]["teacher_examples"]
    with pytest.raises(PipelineError, match=r"unknown key adapt\.cpt_epsilom"):
        Params.from_dict(set_key(copy.deepcopy(raw), "adapt.cpt_epsilom", 0.2))
