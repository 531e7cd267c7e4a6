"""DVC stage `source@<task>`: prompt-tune a teacher prompt on one source task and cache its outputs."""

import sys
from pathlib import Path

# Stages run as `python stages/<name>.py` from the repo root; make `import pipeline` work without installing.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.errors import PipelineError  # noqa: E402
from pipeline.methods import MethodContext, build_method  # noqa: E402
from pipeline.params import positive, section  # noqa: E402
from pipeline.runs import RESULTS_DIR, checkpointer, artifact_meta, open_backbone, open_task, task_meta, write_run  # noqa: E402
from pipeline.settings import ModelSettings, StepSettings, seed_of, task_names  # noqa: E402
from pipeline.methods.prompt_tuning import SoftPrompt  # noqa: E402
from pipeline.single_task import evaluate_untrained, fit_and_evaluate, teacher_outputs  # noqa: E402
from pipeline.schema import load_checked_params, source_teachers  # noqa: E402
from pipeline.stage import run_stage  # noqa: E402
from pipeline.tracking import read_sections  # noqa: E402
from pipeline.train import TrainConfig  # noqa: E402

# The params this stage reads: what dvc.yaml tracks for it, and what dvclive logs.
PARAMS = ("seed", "backbone.dtype", "model", "source", "source_teachers")


def main(argv: list[str]) -> str:
    if len(argv) != 1:
        raise PipelineError("usage: python stages/source.py <source task>")
    name, params = argv[0], load_checked_params()
    if name not in task_names(params, "source_tasks"):
        raise PipelineError(f"params.yaml: {name!r} is not listed in source_tasks")
    model, steps, seed = ModelSettings.from_params(params), StepSettings.from_params(params, "source"), seed_of(params)
    backbone = open_backbone(params)
    task = open_task(backbone, name, model)
    stage = f"source@{name}"
    resume = checkpointer(stage, params, ("seed", "model", "source"), backbone, data=task.info.source_sha256)
    adapter = source_teachers(params).get(name)
    if adapter:  # trained elsewhere: a PEFT prompt-tuning adapter, evaluated and cached like a trained teacher
        from pipeline.export import load_peft_prompt  # imports PEFT (seconds), so only when a teacher is imported

        module = SoftPrompt(load_peft_prompt(Path(adapter), backbone, model.prompt_length)).to(backbone.device)
        run = evaluate_untrained(backbone, module, task, model, stage)
    else:
        module, groups = build_method("pt", MethodContext(backbone, model, steps, seed))
        config = TrainConfig(
            steps=steps.steps, param_groups=groups, warmup_steps=steps.warmup_steps, seed=seed, checkpoint=resume
        )
        run = fit_and_evaluate(backbone, module, task, model, config, stage)
    count = positive(section(params, "source"), "teacher_examples", int, "source")
    teacher = teacher_outputs(backbone, module.weight.detach(), task, count, model.eval_batch_size, stage)
    meta = artifact_meta(backbone, model, **task_meta(task))
    out = RESULTS_DIR / "source" / name
    tensors = {"prompt": module.export(), "teacher": teacher}
    write_run(out, tensors, meta, {"task": name, **run.summary()}, run.result, stage, read_sections(params, PARAMS))
    resume.clear()
    return f"teacher for {name}: test accuracy {run.metrics['test']['accuracy']:.3f} -> {out}"


if __name__ == "__main__":
    run_stage("source", main)
