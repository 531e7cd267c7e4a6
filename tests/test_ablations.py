"""The ablation switches: no distillation (λ = 0), no decomposition, P trained at the target, and their effect."""

from __future__ import annotations

import pytest
import torch

from pipeline.store.tensors import save_tensors
from pipeline.model.backbone import LabelWords
from pipeline.training.distill import distill
from pipeline.methods import MethodContext
from pipeline.methods.mpt import build as build_mpt
from pipeline.methods.mpt import MultitaskPrompt
from pipeline.config.params import DistillSettings, ModelSettings, StepSettings
from pipeline.training.fit import teacher_outputs
from pipeline.training.loop import trainable_parameter_count
from test_train import MODEL, toy_task
from tiny import tiny_backbone

L, D = 4, 32  # the tiny backbone's hidden size is 32


def test_without_decomposition_every_source_prompt_is_p():
    shared = torch.randn(L, D)
    student = MultitaskPrompt(shared, tasks=3, rank=2, generator=torch.Generator().manual_seed(0), decomposition=False)
    prompts = student(torch.tensor([0, 1, 2]))
    assert all(torch.equal(prompt, shared) for prompt in prompts)  # exactly P: U V is all ones, without noise
    assert student.factors == [] and trainable_parameter_count(student) == L * D
    assert set(student.export()) == {"shared", "u", "v"}  # the factors are still saved for the target


@pytest.fixture(scope="module")
def sources():
    """Two tiny source tasks with their teachers' cached outputs."""
    backbone = tiny_backbone("causal")
    tasks = [toy_task(backbone, "a"), toy_task(backbone, "b", positive="great", negative="awful")]
    teachers = []
    for seed, task in enumerate(tasks):
        prompt = backbone.sample_vocab_embeddings(MODEL.prompt_length, torch.Generator().manual_seed(seed))
        teachers.append({**teacher_outputs(backbone, prompt, task, 16, 8), "prompt": prompt})
    return backbone, tasks, teachers


def run_distill(sources, **settings):
    backbone, tasks, teachers = sources
    options = {"rank": 1, "lambda_": 0.9, "temperature": 2.0, **settings}
    steps = StepSettings(steps=3, lr=0.05, factor_lr=0.1, warmup_steps=1)
    return distill(backbone, tasks, teachers, DistillSettings(**options), steps, seed=0, batch_size=8)


def test_lambda_zero_trains_on_the_task_loss_alone(sources):
    _, result = run_distill(sources, lambda_=0.0)
    for record in result.history:
        assert record["loss"] == pytest.approx(record["task"], abs=0, rel=0)  # KL and MSE add exactly nothing
        assert record["kl"] > 0  # they are still measured (and logged), just not optimised


def test_without_decomposition_distillation_trains_p_only(sources):
    student, _ = run_distill(sources, decomposition=False)
    assert torch.equal(student.u @ student.v, torch.ones(2, L, D))
    start = torch.stack([t["prompt"] for t in sources[2]]).mean(0)
    assert not torch.equal(student.shared.detach(), start)


def mpt_context(tmp_path, backbone, freeze_shared: bool) -> MethodContext:
    distill_file = tmp_path / "shared.safetensors"
    tensors = {"shared": torch.randn(L, D), "u": torch.ones(2, L, 1), "v": torch.ones(2, 1, D)}
    save_tensors(distill_file, tensors, {"backbone": backbone.info.fingerprint})
    steps = StepSettings(3, lr=0.02, factor_lr=0.05, warmup_steps=0)
    return MethodContext(
        backbone, ModelSettings(L, 16, 4, 8), steps, seed=0, distill_file=distill_file, freeze_shared=freeze_shared
    )


def test_target_mpt_freezes_p_by_default_and_trains_it_when_asked(tmp_path):
    backbone = tiny_backbone("causal")
    frozen, frozen_groups, _ = build_mpt(mpt_context(tmp_path, backbone, freeze_shared=True))
    assert trainable_parameter_count(frozen) == L + D and len(frozen_groups) == 1
    trained, groups, _ = build_mpt(mpt_context(tmp_path, backbone, freeze_shared=False))
    assert trainable_parameter_count(trained) == L * D + L + D
    assert [group["lr"] for group in groups] == [0.05, 0.02]  # L at factor_lr, P at the full-prompt lr
    assert groups[1]["params"] == [trained.shared]


def test_distillation_scores_a_mixed_batch_alike_with_one_pass_and_per_task_passes(sources, monkeypatch):
    """The per-task path (taken for multi-token label words) must give each group its own task's prompt."""
    _, one_pass = run_distill(sources)
    # Single-token words scored the multi-token way give the same losses (log-softmax over the label tokens
    # shifts each row's logits by a constant, which softmax, KL and cross-entropy ignore).
    monkeypatch.setattr(LabelWords, "single_token", property(lambda self: False))
    _, per_task = run_distill(sources)
    for a, b in zip(one_pass.history, per_task.history):
        for key in ("loss", "task", "kl", "mse"):
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6), key
