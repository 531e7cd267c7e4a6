"""PEFT's MultitaskPromptTuning both ways: results/distill and target mpt runs export as that adapter, and PEFT
reproduces our students' scores for every task id; a PEFT adapter (or its source checkpoint) imports as P and the
factors, its shapes checked."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from peft import MultitaskPromptTuningConfig, PeftModel, get_peft_model
from safetensors.torch import load_file, save_file
from tiny_runs import (
    AUTO, LENGTH, OTHER_TASK, TASK, layout_as_peft_saves, our_label_logits, peft_label_logits, random_prompt,
    save_backbone_folder, save_distill, save_run, save_task_info,
)

from pipeline.__main__ import main
from pipeline.cli.export_mpt import export_multitask
from pipeline.config.schema import distill_from
from pipeline.errors import PipelineError
from pipeline.methods.mpt import MultitaskPrompt, TargetPrompt
from pipeline.methods.peft_mpt import COLS_KEY, ROWS_KEY, load_peft_multitask
from pipeline.methods.prompt_tuning import EXPORT_META, PEFT_KEY, TASK_TYPES

TASKS = (TASK, OTHER_TASK)
RANK = 2


def factors(tasks: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """U (K, l, r), V (K, r, d) far from ones, so each task's prompt differs visibly from P and from the others."""
    generator = torch.Generator().manual_seed(seed)
    u = 1 + torch.randn((tasks, LENGTH, RANK), generator=generator)
    v = 0.5 + torch.randn((tasks, RANK, 32), generator=generator)
    return u, v


@pytest.fixture(params=["causal", "gemma3", "seq2seq"])  # gemma3: embeddings scaled by sqrt(d)
def distilled(request, tmp_path):
    """(backbone, backbone folder, student, exported adapter folder): a distill output of both tasks, exported."""
    backbone = save_backbone_folder(tmp_path / "backbone", request.param)
    for task in TASKS:
        save_task_info(tmp_path / "prepared", task)
    student = MultitaskPrompt.of(random_prompt(), *factors(len(TASKS))).eval()
    save_distill(tmp_path / "distill", backbone, student.shared.detach(), student.u.detach(), student.v.detach())
    export_multitask(tmp_path / "distill", tmp_path / "adapter", tmp_path / "backbone", tmp_path / "prepared")
    return backbone, tmp_path / "backbone", student, tmp_path / "adapter"


def test_peft_reproduces_each_students_scores_by_task_id(distilled):
    backbone, folder, student, adapter = distilled
    model = PeftModel.from_pretrained(AUTO[backbone.info.kind].from_pretrained(folder), str(adapter)).eval()
    for k, task in enumerate(TASKS):
        with torch.no_grad():
            ours = our_label_logits(backbone, student(torch.tensor([k]))[0], task)
        theirs = peft_label_logits(model, backbone, task, task_ids=torch.full((3,), k))
        assert torch.allclose(theirs, ours, atol=1e-4), task.name
        other = peft_label_logits(model, backbone, task, task_ids=torch.full((3,), 1 - k))
        assert not torch.allclose(other, ours, atol=1e-3)  # teeth: the task id picks the factor that counts
    meta = json.loads((adapter / EXPORT_META).read_text())
    assert [(t["task_id"], t["task"]) for t in meta["tasks"]] == [(0, "toy"), (1, "spam")]
    assert meta["tasks"][1]["label_words"] == OTHER_TASK.label_words
    assert meta["tasks"][1]["template"] == OTHER_TASK.template
    assert meta["backbone"] == backbone.info.fingerprint and meta["method"] == "distill" and meta["rank"] == RANK


def test_layout_is_what_peft_saves_itself(distilled, tmp_path):
    """The config fields and weight keys and shapes of PEFT's own save_pretrained of the same MPT adapter."""
    backbone, folder, _, adapter = distilled
    config = MultitaskPromptTuningConfig(
        task_type=TASK_TYPES[backbone.info.kind], num_virtual_tokens=LENGTH, num_transformer_submodules=1,
        num_tasks=len(TASKS), num_ranks=RANK,
    )
    shapes = {PEFT_KEY: (LENGTH, 32), COLS_KEY: (2, LENGTH, RANK), ROWS_KEY: (2, RANK, 32)}
    assert layout_as_peft_saves(adapter, folder, config, tmp_path / "peft") == shapes


def test_import_round_trip_gives_the_same_tensors_and_task_names(distilled):
    backbone, _, student, adapter = distilled
    shared = load_peft_multitask(adapter, backbone, LENGTH)
    assert torch.equal(shared.shared, student.shared) and torch.equal(shared.u, student.u)
    assert torch.equal(shared.v, student.v) and shared.tasks == ("toy", "spam") and shared.rank == RANK


@pytest.mark.parametrize("kind", ["causal", "seq2seq"])
def test_a_target_mpt_run_exports_as_one_task(tmp_path, kind):
    backbone = save_backbone_folder(tmp_path / "backbone", kind)
    save_task_info(tmp_path / "prepared")
    u, v = factors(1, seed=3)
    target = TargetPrompt(random_prompt(4), u[0], v[0])
    exported = target.export()
    save_run(tmp_path / "run", backbone, exported.pop("prompt"), tensors=exported)
    artifact = export_multitask(tmp_path / "run", tmp_path / "adapter", tmp_path / "backbone", tmp_path / "prepared")
    assert artifact.tasks == ("toy",) and artifact.method == "mpt"
    base = AUTO[kind].from_pretrained(tmp_path / "backbone")
    model = PeftModel.from_pretrained(base, str(tmp_path / "adapter")).eval()
    theirs = peft_label_logits(model, backbone, task_ids=torch.zeros(3, dtype=torch.long))
    with torch.no_grad():
        assert torch.allclose(theirs, our_label_logits(backbone, target()), atol=1e-4)
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert (config["num_tasks"], config["num_ranks"], config["peft_type"]) == (1, RANK, "MULTITASK_PROMPT_TUNING")


def test_export_command_picks_the_format(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    backbone = save_backbone_folder(tmp_path / "models" / "backbone")
    for task in TASKS:
        save_task_info(tmp_path / "data" / "prepared", task)
    save_distill(tmp_path / "results" / "distill", backbone, random_prompt(), *factors(2))
    save_run(tmp_path / "results" / "adapt" / "toy-pt", backbone, random_prompt(), method="pt")
    assert main(["export", "results/distill", "exported"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("exported results/distill/shared.safetensors (distill: tasks toy, spam; P 4 x 32, rank 2)")
    assert json.loads((tmp_path / "exported" / "adapter_config.json").read_text())["num_tasks"] == 2
    target = TargetPrompt(random_prompt(4), *(f[0] for f in factors(1))).export()
    save_run(tmp_path / "results" / "adapt" / "toy-mpt", backbone, target.pop("prompt"), tensors=target)
    assert main(["export", "results/adapt/toy-mpt", "mpt-exported", "--multitask"]) == 0
    assert capsys.readouterr().out.startswith("exported results/adapt/toy-mpt/params.safetensors (mpt: tasks toy; P")
    assert json.loads((tmp_path / "mpt-exported" / "adapter_config.json").read_text())["num_tasks"] == 1
    assert main(["export", "results/adapt/toy-pt", "pt-exported", "--multitask"]) == 1  # no P and factors
    err = capsys.readouterr().err
    assert "params.safetensors: holds no shared prompt P and factors U, V (method 'pt')" in err
    assert err.count("\n") == 1 and not (tmp_path / "pt-exported").exists()


def test_other_backbone_and_changed_verbalizer_are_refused(tmp_path):
    backbone = save_backbone_folder(tmp_path / "backbone")
    save_task_info(tmp_path / "prepared")
    save_task_info(tmp_path / "prepared", replace(OTHER_TASK, label_words=[" normal", " free"]))
    save_distill(tmp_path / "distill", backbone, random_prompt(), *factors(2))
    with pytest.raises(PipelineError, match=r"spam/task\.json: label words .* differ from .*shared\.safetensors"):
        export_multitask(tmp_path / "distill", tmp_path / "out", tmp_path / "backbone", tmp_path / "prepared")
    info = json.loads((tmp_path / "backbone" / "backbone.json").read_text())
    (tmp_path / "backbone" / "backbone.json").write_text(json.dumps({**info, "fingerprint": "other"}))
    with pytest.raises(PipelineError, match=r"shared\.safetensors: made with backbone"):
        export_multitask(tmp_path / "distill", tmp_path / "out", tmp_path / "backbone", tmp_path / "prepared")
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------- import: PEFT's own files


def peft_trained(folder, kind: str, tasks: int = 3):
    """A MultitaskPromptTuning adapter as PEFT saves it with its defaults (T5: 2 submodules, 2l rows)."""
    config = MultitaskPromptTuningConfig(
        task_type=TASK_TYPES[kind], num_virtual_tokens=LENGTH, num_tasks=tasks, num_ranks=RANK
    )
    get_peft_model(AUTO[kind].from_pretrained(folder / "backbone"), config).save_pretrained(folder / "peft")
    return load_file(folder / "peft" / "adapter_model.safetensors")


@pytest.mark.parametrize("kind", ["causal", "seq2seq"])
def test_a_peft_adapter_and_its_checkpoint_import_as_the_encoder_rows(tmp_path, kind):
    backbone = save_backbone_folder(tmp_path / "backbone", kind)
    saved = peft_trained(tmp_path, kind)
    rows = LENGTH * (2 if kind == "seq2seq" else 1)
    assert saved[PEFT_KEY].shape == (rows, 32) and saved[COLS_KEY].shape == (3, rows, RANK)
    for path in (tmp_path / "peft", tmp_path / "peft" / "adapter_model.safetensors"):
        shared = load_peft_multitask(path, backbone, LENGTH)
        assert torch.equal(shared.shared, saved[PEFT_KEY][:LENGTH])
        assert torch.equal(shared.u, saved[COLS_KEY][:, :LENGTH]) and torch.equal(shared.v, saved[ROWS_KEY])
        assert shared.tasks == ("task_id_0", "task_id_1", "task_id_2")


def edit_config(adapter, **changes) -> None:
    path = adapter / "adapter_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def resave(path, **changes) -> None:
    save_file({**load_file(path), **changes}, str(path))


CHECKPOINT = "peft/adapter_model.safetensors"


@pytest.mark.parametrize(
    ("change", "where", "message"),
    [
        (lambda d: edit_config(d / "peft", num_virtual_tokens=7), "peft", "num_virtual_tokens is 7 but params.yaml"),
        (lambda d: edit_config(d / "peft", token_dim=64), "peft", "token_dim is 64 but the backbone's hidden size"),
        (lambda d: edit_config(d / "peft", peft_type="PROMPT_TUNING"), "peft", "peft_type is 'PROMPT_TUNING'"),
        (lambda d: edit_config(d / "peft", num_tasks=5), "peft", "adapter_config.json has num_tasks 5; the weights"),
        (lambda d: resave(d / CHECKPOINT, prefix_task_rows=torch.ones(3, RANK, 8)), CHECKPOINT,
         r"prefix_task_rows has shape \(3, 2, 8\) but .* need \(3, 2, 32\)"),
        (lambda d: resave(d / CHECKPOINT, prompt_embeddings=torch.ones(9, 32)), CHECKPOINT,
         r"prompt_embeddings has shape \(9, 32\) but model.prompt_length 4 and the backbone's hidden size 32 need"),
        (lambda d: save_file({PEFT_KEY: torch.ones(LENGTH, 32)}, str(d / CHECKPOINT)), CHECKPOINT,
         "holds no prefix_task_cols, prefix_task_rows; not a PEFT MultitaskPromptTuning adapter"),
        (lambda d: resave(d / CHECKPOINT, prefix_task_cols=torch.full((3, LENGTH, RANK), float("nan"))), CHECKPOINT,
         "NaN or infinite"),
        (lambda d: (d / "peft.bin").write_bytes(b"never read"), "peft.bin", "pickled checkpoints .* are never loaded"),
        (lambda d: (d / CHECKPOINT).rename(d / "peft" / "adapter_model.bin"), "peft",
         r"adapter_model\.bin: pickled weights are never loaded"),
        (lambda d: None, "nowhere", "no such adapter folder or checkpoint"),
    ],
)
def test_import_refuses_mismatches_naming_the_file(tmp_path, change, where, message):
    backbone = save_backbone_folder(tmp_path / "backbone")
    peft_trained(tmp_path, "causal")
    change(tmp_path)
    with pytest.raises(PipelineError, match=message) as error:
        load_peft_multitask(tmp_path / where, backbone, LENGTH)
    assert str(tmp_path / where) in str(error.value)
    assert "\n" not in str(error.value)


def test_distill_from_must_be_a_path_or_null():
    assert distill_from({"distill_from": None}) is None and distill_from({}) is None
    assert distill_from({"distill_from": "adapters/mpt"}) == "adapters/mpt"
    with pytest.raises(PipelineError, match=r"params.yaml: distill_from must be the path of a PEFT"):
        distill_from({"distill_from": ["adapters/mpt"]})
