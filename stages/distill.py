"""DVC stage `distill`: distil the source teachers into one shared prompt P with per-task factors (MPT)."""

import hashlib
import sys
from pathlib import Path

# Stages run as `python stages/<name>.py` from the repo root; make `import pipeline` work without installing.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from pipeline.artifacts import load_tensors  # noqa: E402
from pipeline.atomic import read_json  # noqa: E402
from pipeline.distill import distill  # noqa: E402
from pipeline.evaluate import evaluate_prompt  # noqa: E402
from pipeline.precision import dtype_name  # noqa: E402
  # noqa: E402
from pipeline.runs import RESULTS_DIR, checkpointer, artifact_meta, open_backbone, open_task, write_run  # noqa: E402
from pipeline.settings import DistillSettings, ModelSettings, StepSettings, seed_of, task_names  # noqa: E402
from pipeline.schema import load_checked_params  # noqa: E402
from pipeline.stage import run_stage  # noqa: E402
from pipeline.tracking import read_sections  # noqa: E402
from pipeline.train import trainable_parameter_count  # noqa: E402

# The params this stage reads: what dvc.yaml tracks for it, and what dvclive logs.
PARAMS = ("seed", "backbone.dtype", "model", "distill", "source_tasks")


def main(argv: list[str]) -> str:
    params = load_checked_params()
    names = task_names(params, "source_tasks")
    model, steps, seed = ModelSettings.from_params(params), StepSettings.from_params(params, "distill"), seed_of(params)
    backbone = open_backbone(params)
    settings = DistillSettings.from_params(params, model.prompt_length, backbone.hidden_size)
    expect = {"backbone": backbone.info.fingerprint, "prompt_length": model.prompt_length}
    tasks, teachers = [], []
    for name in names:
        folder = RESULTS_DIR / "source" / name
        prompt, _ = load_tensors(folder / "prompt.safetensors", f"source@{name}", expect)
        # Teacher outputs are targets for the student's scores: they must come from the same numerics (dtype) as
        # the student, or the KL/MSE terms would fit the other dtype's rounding. Prompts load under any dtype.
        teacher_expect = {**expect, "backbone_dtype": dtype_name(backbone.dtype)}
        outputs, _ = load_tensors(folder / "teacher.safetensors", f"source@{name}", teacher_expect)
        tasks.append(open_task(backbone, name, model))
        teachers.append({**outputs, "prompt": prompt["prompt"]})
    teacher_hashes = [hashlib.sha256(t["prompt"].numpy().tobytes()).hexdigest()[:16] for t in teachers]
    resume = checkpointer(
        "distill", params, ("seed", "model", "distill", "source_tasks"), backbone, teachers=teacher_hashes
    )
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
        teacher = read_json(RESULTS_DIR / "source" / task.name / "metrics.json", f"source@{task.name}")
        per_task[task.name]["teacher"] = {split: teacher[split] for split in ("dev", "test")}
    meta = artifact_meta(backbone, model, rank=settings.rank, source_tasks=names)
    metrics = {
        "tasks": per_task,
        "trainable_params": trainable_parameter_count(student),
        "steps": result.steps,
    }
    out = RESULTS_DIR / "distill"
    write_run(out, {"shared": student.export()}, meta, metrics, result, "distill", read_sections(params, PARAMS))
    resume.clear()
    mean = sum(m["test"]["accuracy"] for m in per_task.values()) / len(per_task)
    return f"P {tuple(student.shared.shape)} + rank-{settings.rank} factors for {len(names)} tasks: mean student test accuracy {mean:.3f} -> {out}"


if __name__ == "__main__":
    run_stage("distill", main)
