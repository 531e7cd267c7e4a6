"""Stage ``distill``: distil the source teachers into one shared prompt P with per-task factors (MPT), or take P
and the factors from a PEFT MultitaskPromptTuning adapter (params ``distill_from``)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from pipeline.config.params import DistillSettings, tracked_keys
from pipeline.config.schema import Params
from pipeline.data.batching import TaskData
from pipeline.flows.runs import artifact_meta, checkpointer, open_backbone, open_task, write_run
from pipeline.methods.mpt import MultitaskPrompt
from pipeline.methods.peft_mpt import load_peft_multitask
from pipeline.model.backbone import Backbone
from pipeline.model.precision import dtype_name
from pipeline.layout import distill_dir, source_dir
from pipeline.store.atomic import read_json
from pipeline.store.tensors import load_tensors
from pipeline.store.tracking import read_sections
from pipeline.training.checkpoint import Checkpointer
from pipeline.training.distill import distill
from pipeline.training.evaluate import evaluate_prompt
from pipeline.training.loop import TrainResult, trainable_parameter_count


def run(params: Params) -> str:
    """Distil the teachers of ``source_tasks`` (or import ``distill_from``) into results/distill; return the
    summary line."""
    names, model = list(params.source_tasks), params.model
    backbone = open_backbone(params)
    tasks = [open_task(backbone, name, model) for name in names]
    keys = tracked_keys("distill")
    resume: Checkpointer | None = None
    provenance = {}
    if params.distill_from:  # trained elsewhere: PEFT's P and factors, evaluated like a distilled student
        shared = load_peft_multitask(Path(params.distill_from), backbone, model.prompt_length)
        student = MultitaskPrompt.of(shared.shared, shared.u, shared.v).to(backbone.device)
        result, factor_tasks = TrainResult(history=[], steps=0, seconds=0.0), list(shared.tasks)
        provenance = {"imported_from": str(shared.path)}
    else:
        student, result, resume = _distilled(params, backbone, tasks, keys)
        factor_tasks = names
    student.eval()
    per_task = {task.name: _evaluated(backbone, student, task, factor_tasks, params) for task in tasks}
    # factor_tasks: the task of each factor, in order (PEFT's task ids). label_words: what each source task's scores
    # were made with, so an export can refuse a task whose verbalizer changed since.
    meta = artifact_meta(
        backbone, model, params.numerics, rank=int(student.u.shape[-1]), source_tasks=names, factor_tasks=factor_tasks,
        label_words={task.name: task.info.label_words for task in tasks}, **provenance,
    )
    metrics = {
        "tasks": per_task, "trainable_params": trainable_parameter_count(student), "steps": result.steps, **provenance
    }
    out = distill_dir()
    write_run(
        out, {"shared": student.export()}, meta, metrics, result, "distill", read_sections(params.raw, keys),
        out / "timing.json",  # inside: later stages depend on shared.safetensors and metrics.json, never the folder
    )
    if resume is not None:
        resume.clear()
    mean = sum(m["test"]["accuracy"] for m in per_task.values()) / len(per_task)
    made = f"imported from {params.distill_from}" if provenance else "distilled"
    return (
        f"P {tuple(student.shared.shape)} + rank-{student.u.shape[-1]} factors for {len(factor_tasks)} tasks, "
        f"{made}: mean student test accuracy {mean:.3f} -> {out}"
    )


def _distilled(
    params: Params, backbone: Backbone, tasks: list[TaskData], keys: tuple[str, ...]
) -> tuple[MultitaskPrompt, TrainResult, Checkpointer]:
    """The student trained on the cached teachers of ``tasks``, and its checkpoint (cleared once written)."""
    model = params.model
    settings = DistillSettings.from_params(params.raw, model.prompt_length, backbone.hidden_size)
    expect = {"backbone": backbone.info.fingerprint, "prompt_length": model.prompt_length}
    teachers = []
    for task in tasks:
        prompt, _ = load_tensors(source_dir(task.name) / "prompt.safetensors", f"source@{task.name}", expect)
        # Teacher outputs are targets for the student's scores: they must come from the same numerics (dtype) as
        # the student, or the KL/MSE terms would fit the other dtype's rounding. Prompts load under any dtype.
        teacher_expect = {**expect, "backbone_dtype": dtype_name(backbone.dtype)}
        outputs, _ = load_tensors(source_dir(task.name) / "teacher.safetensors", f"source@{task.name}", teacher_expect)
        teachers.append({**outputs, "prompt": prompt["prompt"]})
    teacher_hashes = [hashlib.sha256(t["prompt"].numpy().tobytes()).hexdigest()[:16] for t in teachers]
    resume = checkpointer("distill", params, keys, backbone, teachers=teacher_hashes)
    student, result = distill(
        backbone, tasks, teachers, settings, params.distill, params.seed, model.batch_size, resume
    )
    return student, result, resume


def _evaluated(
    backbone: Backbone, student: MultitaskPrompt, task: TaskData, factor_tasks: list[str], params: Params
) -> dict:
    """The student's dev and test metrics on ``task`` beside its teacher's. A task without a factor of its own (an
    imported adapter's tasks are others) gets P ∘ (mean U)(mean V), the prompt a target mpt run starts from."""
    if task.name in factor_tasks:
        ids = torch.tensor([factor_tasks.index(task.name)], device=backbone.device)
        prompt, factor = (lambda batch: student(ids)[0]), task.name
    else:
        with torch.no_grad():
            mean = student.shared * (student.u.mean(dim=0) @ student.v.mean(dim=0))
        prompt, factor = (lambda batch: mean), "mean"
    metrics = evaluate_prompt(
        backbone, prompt, task, ("dev", "test"), params.model.eval_batch_size, description=f"distill: {task.name}"
    )
    # The teacher's scores beside the student's, so the cost of sharing P is visible in one file.
    teacher = read_json(source_dir(task.name) / "metrics.json", f"source@{task.name}")
    return {**metrics, "factors": factor, "teacher": {split: teacher[split] for split in ("dev", "test")}}
