"""DVC stage `adapt@<target>-<method>`: adapt one target task with one method, same budget for all."""

import hashlib
import sys
from pathlib import Path

# Stages run as `python stages/<name>.py` from the repo root; make `import pipeline` work without installing.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.errors import PipelineError  # noqa: E402
from pipeline.methods import MethodContext, build  # noqa: E402
  # noqa: E402
from pipeline.runs import RESULTS_DIR, checkpointer, artifact_meta, open_backbone, open_task, task_meta, write_run  # noqa: E402
from pipeline.settings import ModelSettings, StepSettings, seed_of, task_names  # noqa: E402
from pipeline.settings import MethodSettings  # noqa: E402
from pipeline.single_task import fit_and_evaluate  # noqa: E402
from pipeline.schema import load_checked_params  # noqa: E402
from pipeline.stage import run_stage  # noqa: E402
from pipeline.tracking import read_sections  # noqa: E402
from pipeline.train import TrainConfig  # noqa: E402

# The params this stage reads: what dvc.yaml tracks for it, and what dvclive logs.
PARAMS = ("seed", "model", "adapt.steps", "adapt.lr", "adapt.factor_lr", "adapt.warmup_steps")


def main(argv: list[str]) -> str:
    if len(argv) != 2:
        raise PipelineError("usage: python stages/adapt.py <target task> <method>")
    (target, method), params = argv, load_checked_params()
    if target not in task_names(params, "target_tasks"):
        raise PipelineError(f"params.yaml: {target!r} is not listed in target_tasks")
    model, steps, seed = ModelSettings.from_params(params), StepSettings.from_params(params, "adapt"), seed_of(params)
    backbone = open_backbone()
    task = open_task(backbone, target, model)
    # Method inputs: the target (spot, cpt, ptuning), the source teachers (spot, attempt), the per-method knobs.
    sources, options = tuple(task_names(params, "source_tasks")), MethodSettings.from_params(params)
    built = build(method, MethodContext(backbone, model, steps, seed, task=task, sources=sources, options=options))
    module, groups = built.module, built.groups
    stage = f"adapt@{target}-{method}"
    resume = checkpointer(
        stage, params, ("seed", "model", "adapt"), backbone, data=task.info.source_sha256, init=_init_identity(module)
    )
    config = TrainConfig(
        steps=steps.steps, param_groups=groups, warmup_steps=steps.warmup_steps, seed=seed, checkpoint=resume
    )
    run = fit_and_evaluate(backbone, module, task, model, config, stage)
    meta = artifact_meta(backbone, model, method=method, **task_meta(task))
    out = RESULTS_DIR / "adapt" / f"{target}-{method}"
    summary = {"target": target, "method": method, **run.summary(), **built.extras}  # extras: e.g. spot's choice
    summary["majority_rate"] = run.metrics["test"]["majority_rate"]
    write_run(out, {"params": module.export()}, meta, summary, run.result, stage, read_sections(params, PARAMS))
    resume.clear()
    return (
        f"{method} on {target}: {run.trainable_params} trainable parameters, "
        f"test accuracy {run.metrics['test']['accuracy']:.3f}, macro-F1 {run.metrics['test']['macro_f1']:.3f} -> {out}"
    )


def _init_identity(module) -> str:
    """The starting point (e.g. mpt's P and L from distill): a new P must not resume an old checkpoint."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode() + tensor.detach().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


if __name__ == "__main__":
    run_stage("adapt", main)
