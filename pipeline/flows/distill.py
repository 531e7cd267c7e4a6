"""Stage ``distill``: distil the source teachers into one shared prompt P with per-task factors (MPT)."""

from __future__ import annotations

import hashlib

import torch

from pipeline.config.params import DistillSettings, tracked_keys
from pipeline.config.schema import Params
from pipeline.flows.runs import artifact_meta, checkpointer, open_backbone, open_task, write_run
from pipeline.model.precision import dtype_name
from pipeline.layout import distill_dir, source_dir
from pipeline.store.atomic import read_json
from pipeline.store.tensors import load_tensors
from pipeline.store.tracking import read_sections
from pipeline.training.distill import distill
from pipeline.training.evaluate import evaluate_prompt
from pipeline.training.loop import trainable_parameter_count


def run(params: Params) -> str:
    """Distil the teachers of ``source_tasks`` into results/distill; return the summary line."""
    names = list(params.source_tasks)
    model, steps, seed = params.model, params.distill, params.seed
    backbone = open_backbone(params)
    settings = DistillSettings.from_params(params.raw, model.prompt_length, backbone.hidden_size)
    expect = {"backbone": backbone.info.fingerprint, "prompt_length": model.prompt_length}
    tasks, teachers = [], []
    for name in names:
        prompt, _ = load_tensors(source_dir(name) / "prompt.safetensors", f"source@{name}", expect)
        # Teacher outputs are targets for the student's scores: they must come from the same numerics (dtype) as
        # the student, or the KL/MSE terms would fit the other dtype's rounding. Prompts load under any dtype.
        teacher_expect = {**expect, "backbone_dtype": dtype_name(backbone.dtype)}
        outputs, _ = load_tensors(source_dir(name) / "teacher.safetensors", f"source@{name}", teacher_expect)
        tasks.append(open_task(backbone, name, model))
        teachers.append({**outputs, "prompt": prompt["prompt"]})
    teacher_hashes = [hashlib.sha256(t["prompt"].numpy().tobytes()).hexdigest()[:16] for t in teachers]
    keys = tracked_keys("distill")
    resume = checkpointer("distill", params, keys, backbone, teachers=teacher_hashes)
    student, result = distill(backbone, tasks, teachers, settings, steps, seed, model.batch_size, resume)
    student.eval()
    per_task = {}
    for k, task in enumerate(tasks):
        ids = torch.tensor([k], device=backbone.device)
        per_task[task.name] = evaluate_prompt(
            backbone, lambda b, ids=ids: student(ids)[0], task, ("dev", "test"), model.eval_batch_size,
            description=f"distill: {task.name}",
        )
        # The teacher's scores beside the student's, so the cost of sharing P is visible in one file.
        teacher = read_json(source_dir(task.name) / "metrics.json", f"source@{task.name}")
        per_task[task.name]["teacher"] = {split: teacher[split] for split in ("dev", "test")}
    meta = artifact_meta(backbone, model, rank=settings.rank, source_tasks=names)
    metrics = {"tasks": per_task, "trainable_params": trainable_parameter_count(student), "steps": result.steps}
    out = distill_dir()
    write_run(out, {"shared": student.export()}, meta, metrics, result, "distill", read_sections(params.raw, keys))
    resume.clear()
    mean = sum(m["test"]["accuracy"] for m in per_task.values()) / len(per_task)
    return (
        f"P {tuple(student.shared.shape)} + rank-{settings.rank} factors for {len(names)} tasks: "
        f"mean student test accuracy {mean:.3f} -> {out}"
    )
