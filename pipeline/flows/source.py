"""Stage ``source@<task>``: prompt-tune a teacher prompt on one source task (or import a PEFT adapter as it) and
cache its outputs on training rows for distillation."""

from __future__ import annotations

from pathlib import Path

from pipeline.config.params import tracked_keys
from pipeline.config.schema import Params
from pipeline.errors import PipelineError
from pipeline.flows.runs import artifact_meta, checkpointer, open_backbone, open_task, task_meta, write_run
from pipeline.layout import source_dir, source_timing_file
from pipeline.methods import MethodContext, build_method
from pipeline.methods.prompt_tuning import SoftPrompt, load_peft_prompt
from pipeline.training.fit import evaluate_untrained, fit_and_evaluate, teacher_outputs
from pipeline.training.loop import TrainConfig
from pipeline.store.tracking import read_sections


def run(params: Params, name: str) -> str:
    """Train (or import) the teacher of source task ``name`` into results/source/<name>; return the summary line."""
    if name not in params.source_tasks:
        raise PipelineError(f"params.yaml: {name!r} is not listed in source_tasks")
    model, steps, seed = params.model, params.source, params.seed
    backbone = open_backbone(params)
    task = open_task(backbone, name, model)
    stage, keys = f"source@{name}", tracked_keys("source", name)
    resume = checkpointer(stage, params, keys, backbone, data=task.info.source_sha256)
    adapter = params.source_teachers.get(name)
    if adapter:  # trained elsewhere: a PEFT prompt-tuning adapter, evaluated and cached like a trained teacher
        module = SoftPrompt(load_peft_prompt(Path(adapter), backbone, model.prompt_length)).to(backbone.device)
        trained = evaluate_untrained(backbone, module, task, model, stage)
    else:
        module, groups = build_method("pt", MethodContext(backbone, model, steps, seed))
        config = TrainConfig(
            steps=steps.steps, param_groups=groups, warmup_steps=steps.warmup_steps, seed=seed, checkpoint=resume
        )
        trained = fit_and_evaluate(backbone, module, task, model, config, stage, dev=params.source_dev)
    teacher = teacher_outputs(
        backbone, module.weight.detach(), task, params.teacher_examples, model.eval_batch_size, stage
    )
    meta = artifact_meta(backbone, model, params.numerics, **task_meta(task))
    out = source_dir(name)
    tensors = {"prompt": module.export(), "teacher": teacher}
    metrics = {"task": name, **trained.summary()}
    write_run(
        out, tensors, meta, metrics, trained.result, stage, read_sections(params.raw, keys), source_timing_file(name)
    )
    resume.clear()
    return f"teacher for {name}: test accuracy {trained.metrics['test']['accuracy']:.3f} -> {out}"
