"""Export to and import from PEFT prompt-tuning adapters: PEFT reproduces our scores; mismatches are refused."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from peft import PeftModel, PromptTuningConfig, get_peft_model
from safetensors.torch import load_file, save_file
from tiny import full_params
from tiny_runs import (
    AUTO, LENGTH, TASK, layout_as_peft_saves, our_label_logits, peft_label_logits, random_prompt,
    save_backbone_folder, save_repo, save_run, save_task_info,
)
from transformers import AutoModelForSeq2SeqLM

from pipeline.__main__ import main
from pipeline.store.tensors import load_tensors
from pipeline.data.prepare import prepare_task
from pipeline.errors import PipelineError
from pipeline.cli.export import EXPORT_META, PEFT_KEY, TASK_TYPES, export_run
from pipeline.methods.prompt_tuning import load_peft_prompt
from pipeline.config.schema import source_teachers
from pipeline.config.tasks import TaskSpec
from stages import source as stage


@pytest.fixture(params=["causal", "gemma3", "seq2seq"])  # gemma3: embeddings scaled by sqrt(d)
def exported(request, tmp_path):
    """(backbone, backbone folder, prompt, exported adapter folder) for one backbone kind."""
    backbone = save_backbone_folder(tmp_path / "backbone", request.param)
    save_task_info(tmp_path / "prepared")
    prompt = random_prompt()
    save_run(tmp_path / "run", backbone, prompt)
    export_run(tmp_path / "run", tmp_path / "adapter", tmp_path / "backbone", tmp_path / "prepared")
    return backbone, tmp_path / "backbone", prompt, tmp_path / "adapter"


def test_peft_reproduces_our_label_scores(exported):
    backbone, folder, prompt, adapter = exported
    ours, without = our_label_logits(backbone, prompt), our_label_logits(backbone, 0 * prompt)
    model = PeftModel.from_pretrained(AUTO[backbone.info.kind].from_pretrained(folder), str(adapter)).eval()
    theirs = peft_label_logits(model, backbone)
    assert torch.allclose(theirs, ours, atol=1e-4)
    assert not torch.allclose(theirs, without, atol=1e-3)  # the check has teeth: the prompt moves the scores
    meta = json.loads((adapter / EXPORT_META).read_text())
    assert meta["backbone"] == backbone.info.fingerprint and meta["task"] == "toy" and meta["method"] == "mpt"
    assert meta["label_words"] == TASK.label_words and meta["template"] == TASK.template


def test_layout_is_what_peft_saves_itself(exported, tmp_path):
    """Same config fields and the same weight keys and shapes as PEFT's save_pretrained of the same adapter."""
    backbone, folder, _, adapter = exported
    config = PromptTuningConfig(
        task_type=TASK_TYPES[backbone.info.kind], num_virtual_tokens=LENGTH, num_transformer_submodules=1
    )
    assert layout_as_peft_saves(adapter, folder, config, tmp_path / "peft") == {PEFT_KEY: (4, 32)}


def test_import_round_trip_gives_the_same_tensor(exported):
    backbone, _, prompt, adapter = exported
    assert torch.equal(load_peft_prompt(adapter, backbone, LENGTH), prompt)


def test_source_teacher_exports_too(tmp_path):
    backbone = save_backbone_folder(tmp_path / "backbone")
    save_task_info(tmp_path / "prepared")
    save_run(tmp_path / "teacher", backbone, random_prompt(1), method=None)
    artifact = export_run(tmp_path / "teacher", tmp_path / "out", tmp_path / "backbone", tmp_path / "prepared")
    assert artifact.method == "source"
    assert torch.equal(load_peft_prompt(tmp_path / "out", backbone, LENGTH), random_prompt(1))


def test_other_backbone_is_refused_naming_the_file(tmp_path):
    backbone = save_backbone_folder(tmp_path / "backbone")
    save_task_info(tmp_path / "prepared")
    made = save_run(tmp_path / "run", backbone, random_prompt())
    info = json.loads((tmp_path / "backbone" / "backbone.json").read_text())
    (tmp_path / "backbone" / "backbone.json").write_text(json.dumps({**info, "fingerprint": "other"}))
    with pytest.raises(PipelineError, match="made with backbone") as error:
        export_run(tmp_path / "run", tmp_path / "out", tmp_path / "backbone", tmp_path / "prepared")
    assert str(made) in str(error.value) and "\n" not in str(error.value)
    assert not (tmp_path / "out").exists()


def test_existing_folder_that_is_no_export_is_left_alone(exported, tmp_path):
    backbone, folder, _, _ = exported
    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "notes.txt").write_text("mine")
    with pytest.raises(PipelineError, match="not an earlier export"):
        export_run(tmp_path / "run", keep, folder, tmp_path / "prepared")
    assert (keep / "notes.txt").read_text() == "mine"


def test_export_command(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    backbone = save_repo(tmp_path)
    assert main(["export", "results/adapt/toy-pt", "exported"]) == 0
    assert capsys.readouterr().out.startswith("exported results/adapt/toy-pt/params.safetensors (toy, pt, 4 x 32)")
    assert torch.equal(load_peft_prompt(tmp_path / "exported", backbone, LENGTH), random_prompt())
    assert main(["export", "results/adapt/toy-pt", "results"]) == 1  # would replace a folder that is no export
    err = capsys.readouterr().err
    assert err.startswith("error: results: exists and is not an earlier export") and err.count("\n") == 1


def test_peft_saved_adapter_imports_and_t5_decoder_rows_are_dropped(tmp_path):
    """PEFT's default for T5 saves 2l rows (s = 2); its prompt tuning only ever uses the first l."""
    backbone = save_backbone_folder(tmp_path / "backbone", "seq2seq")
    config = PromptTuningConfig(task_type=TASK_TYPES["seq2seq"], num_virtual_tokens=LENGTH)
    model = get_peft_model(AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "backbone"), config)
    model.save_pretrained(tmp_path / "peft")
    saved = load_file(tmp_path / "peft" / "adapter_model.safetensors")[PEFT_KEY]
    assert saved.shape == (2 * LENGTH, 32)
    assert torch.equal(load_peft_prompt(tmp_path / "peft", backbone, LENGTH), saved[:LENGTH])


def edit_config(adapter, **changes) -> None:
    path = adapter / "adapter_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a: edit_config(a, num_virtual_tokens=7), "num_virtual_tokens is 7 but params.yaml model.prompt_len"),
        (lambda a: edit_config(a, token_dim=64), "token_dim is 64 but the backbone's hidden size needs 32"),
        (lambda a: edit_config(a, peft_type="LORA"), "peft_type is 'LORA'"),
        (lambda a: (a / EXPORT_META).write_text('{"backbone": "other"}'), "exported from backbone 'other'"),
        (lambda a: (a / "adapter_config.json").unlink(), "adapter_config.json: not found"),
    ],
)
def test_import_refuses_mismatches_naming_the_folder(tmp_path, change, message):
    backbone = save_backbone_folder(tmp_path / "backbone")
    save_task_info(tmp_path / "prepared")
    save_run(tmp_path / "run", backbone, random_prompt())
    export_run(tmp_path / "run", tmp_path / "adapter", tmp_path / "backbone", tmp_path / "prepared")
    change(tmp_path / "adapter")
    with pytest.raises(PipelineError, match=message) as error:
        load_peft_prompt(tmp_path / "adapter", backbone, LENGTH)
    assert str(tmp_path / "adapter") in str(error.value)


def test_pickled_adapter_is_refused_never_loaded(tmp_path):
    backbone = save_backbone_folder(tmp_path / "backbone")
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    config = PromptTuningConfig(task_type=TASK_TYPES["causal"], num_virtual_tokens=LENGTH, token_dim=32)
    config.save_pretrained(str(adapter))
    (adapter / "adapter_model.bin").write_bytes(b"not even read")
    with pytest.raises(PipelineError, match=r"adapter_model\.bin: pickled weights are never loaded"):
        load_peft_prompt(adapter, backbone, LENGTH)


# ---------------------------------------------------------------------------------------- the source stage


def toy_csv(path) -> None:
    words = "good great fine bad awful poor movie film plot actor review game".split()
    rows = [f"{words[i % 12]} {words[(i * 5) % 12]} {i},{'fresh' if i % 2 else 'rotten'}" for i in range(40)]
    path.write_text("text,label\n" + "\n".join(rows) + "\n")


def test_source_stage_uses_an_adapter_instead_of_training(tmp_path, monkeypatch):
    save_backbone_folder(tmp_path / "models" / "backbone")
    adapter = tmp_path / "adapter"
    config = PromptTuningConfig(task_type=TASK_TYPES["causal"], num_virtual_tokens=LENGTH, token_dim=32)
    config.save_pretrained(str(adapter))
    save_file({PEFT_KEY: random_prompt(2)}, str(adapter / "adapter_model.safetensors"))
    toy_csv(tmp_path / "raw.csv")
    spec = {
        "source": {"kind": "file", "path": "raw.csv", "format": "csv"}, "columns": {"text": "text", "label": "label"},
        "template": "{text} sentiment :", "label_words": {"fresh": " positive", "rotten": " negative"},
        "splits": {"train": 20, "dev": 6, "test": 6},
    }
    params = full_params({"a": spec, "b": spec, "c": spec}, ["a", "b"], ["c"])
    params["model"]["prompt_length"] = LENGTH
    params["source_teachers"] = {"a": str(adapter)}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    prepare_task(TaskSpec.from_params("a", spec), tmp_path / "data" / "prepared" / "a", 0, tmp_path)
    stage.main(["a"])
    prompt, _ = load_tensors(tmp_path / "results" / "source" / "a" / "prompt.safetensors", "source")
    assert torch.equal(prompt["prompt"], random_prompt(2))
    assert json.loads((tmp_path / "results" / "source" / "a" / "metrics.json").read_text())["steps"] == 0
    assert (tmp_path / "results" / "source" / "a" / "teacher.safetensors").is_file()


def test_source_teachers_must_name_source_tasks():
    params = {"source_tasks": ["a", "b"], "source_teachers": {"x": "somewhere"}}
    with pytest.raises(PipelineError, match=r"source_teachers\.x: not listed in source_tasks"):
        source_teachers(params)
    assert source_teachers({"source_tasks": ["a"], "source_teachers": None}) == {}
