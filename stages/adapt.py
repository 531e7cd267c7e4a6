"""DVC stage `adapt@<target>-<method>-<seed>`: adapt one target with one method under one seed, once per k.

Every k of ``tasks.<target>.k_shot`` gets the same step budget on its own k-shot draw (the same draw for every
method of this seed); the k runs are written together, as ``results/adapt/<target>-<method>/seed<seed>/k<k>/``.
"""

import hashlib
import sys
from pathlib import Path

# Stages run as `python stages/<name>.py` from the repo root; make `import pipeline` work without installing.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.adapt_runs import k_label, stage_dir, stage_name, target_specs, timing_file  # noqa: E402
from pipeline.errors import PipelineError  # noqa: E402
from pipeline.fewshot import few_shot_task  # noqa: E402
from pipeline.methods import MethodContext, build  # noqa: E402
from pipeline.runs import FinishedRun, checkpointer, artifact_meta, open_backbone, open_task, task_meta  # noqa: E402
from pipeline.runs import write_run_folders  # noqa: E402
from pipeline.settings import ModelSettings, StepSettings, freeze_shared, seeds_of, task_names  # noqa: E402
from pipeline.settings import MethodSettings  # noqa: E402
from pipeline.single_task import fit_and_evaluate  # noqa: E402
from pipeline.schema import load_checked_params  # noqa: E402
from pipeline.stage import run_stage  # noqa: E402
from pipeline.tracking import read_sections  # noqa: E402
from pipeline.train import TrainConfig  # noqa: E402

# The params this stage reads besides its target's spec: what dvc.yaml tracks for it, and what dvclive logs.
# The seed comes on the command line (the matrix), so adding a seed to ``seeds`` reruns no existing stage.
# The params this stage tracks in dvc.yaml (logged with dvclive); keep the two lists equal.
PARAMS = (
    "backbone.dtype", "model", "source_tasks", "adapt.steps", "adapt.lr", "adapt.factor_lr", "adapt.warmup_steps",
    "adapt.freeze_shared", "adapt.encoder_lr", "adapt.ptuning_encoder", "adapt.cpt_examples", "adapt.cpt_epsilon",
)


def main(argv: list[str]) -> str:
    if len(argv) != 3:
        raise PipelineError("usage: python stages/adapt.py <target task> <method> <seed>")
    (target, method, seed_text), params = argv, load_checked_params()
    if target not in task_names(params, "target_tasks"):
        raise PipelineError(f"params.yaml: {target!r} is not listed in target_tasks")
    if not seed_text.isdigit() or int(seed_text) not in seeds_of(params):
        raise PipelineError(f"params.yaml: seed {seed_text!r} is not listed in seeds ({seeds_of(params)})")
    seed, spec = int(seed_text), target_specs(params)[target]
    model, steps = ModelSettings.from_params(params), StepSettings.from_params(params, "adapt")
    backbone = open_backbone(params)
    task = open_task(backbone, target, model)
    stage = stage_name(target, method, seed)
    runs, resumes = {}, []
    for k in spec.k_shot:
        shot = few_shot_task(task, k, seed)
        # Method inputs: the target (spot, cpt, ptuning), the source teachers (spot, attempt), the per-method knobs.
        context = MethodContext(
            backbone, model, steps, seed, task=shot, sources=tuple(task_names(params, "source_tasks")),
            options=MethodSettings.from_params(params), freeze_shared=freeze_shared(params),
        )
        built = build(method, context)
        rows = hashlib.sha256(repr(shot.splits["train"].token_ids).encode()).hexdigest()[:16]
        resume = checkpointer(
            f"{stage}/{k_label(k)}", params, ("model", "adapt"), backbone, seed=seed, k=k, rows=rows,
            data=task.info.source_sha256, init=_init_identity(built.module),
        )
        config = TrainConfig(
            steps=steps.steps, param_groups=built.groups, warmup_steps=steps.warmup_steps, seed=seed, checkpoint=resume
        )
        run = fit_and_evaluate(backbone, built.module, shot, model, config, f"{stage} k={k}", spec.metrics)
        summary = {"target": target, "method": method, "seed": seed, "k": k,
                   "train_examples": len(shot.splits["train"]), **run.summary(), **built.extras}
        summary["majority_rate"] = run.metrics["test"]["majority_rate"]
        meta = artifact_meta(backbone, model, method=method, seed=seed, k=k, **task_meta(task))
        runs[k_label(k)] = FinishedRun({"params": built.module.export()}, meta, summary, run.result)
        resumes.append(resume)  # kept until every k is written: a killed stage resumes the finished k's at once
    out = stage_dir(target, method, seed)
    tracked = read_sections(params, PARAMS + (f"tasks.{target}",))
    write_run_folders(out, timing_file(target, method, seed), runs, stage, tracked)
    for resume in resumes:
        resume.clear()
    scores = ", ".join(f"k={k}: {r.metrics['test']['accuracy']:.3f}" for k, r in zip(spec.k_shot, runs.values()))
    return f"{method} on {target}, seed {seed}: test accuracy {scores} -> {out}"


def _init_identity(module) -> str:
    """The starting point (e.g. mpt's P and L from distill): a new P must not resume an old checkpoint."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode() + tensor.detach().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


if __name__ == "__main__":
    run_stage("adapt", main)
