"""Stage ``adapt@<target>-<method>-<seed>``: adapt one target with one method under one seed, once per k.

Every k of ``tasks.<target>.k_shot`` gets the same step budget on its own k-shot draw (the same draw for every
method of this seed); the k runs are written together, as ``results/adapt/<target>-<method>/seed<seed>/k<k>/``.
"""

from __future__ import annotations

import hashlib

import torch
import transformers
from torch import nn

from pipeline.config.method_inputs import KNOBS
from pipeline.config.params import ModelSettings, NumericsSettings, tracked_keys
from pipeline.config.schema import Params
from pipeline.data.batching import TaskData
from pipeline.data.fewshot import few_shot_task
from pipeline.errors import PipelineError
from pipeline.flows.runs import FinishedRun, artifact_meta, checkpointer, open_backbone, open_task, task_meta
from pipeline.flows.runs import write_run_folders
from pipeline.layout import MEMO_DIR, k_label, stage_dir, stage_name, timing_file
from pipeline.methods import MethodContext, build
from pipeline.model.backbone import Backbone
from pipeline.model.precision import dtype_name
from pipeline.store.memo import remembered
from pipeline.store.tracking import read_sections
from pipeline.training.fit import evaluate_template, fit_and_evaluate
from pipeline.training.loop import TrainConfig


def run(params: Params, target: str, method: str, seed_text: str) -> str:
    """Train and evaluate ``method`` on ``target`` for every k under seed ``seed_text``; return the summary line."""
    if target not in params.target_tasks:
        raise PipelineError(f"params.yaml: {target!r} is not listed in target_tasks")
    if method not in params.methods:
        raise PipelineError(f"params.yaml: {method!r} is not listed in adapt.methods ({list(params.methods)})")
    if not seed_text.isdigit() or int(seed_text) not in params.seeds:
        raise PipelineError(f"params.yaml: seed {seed_text!r} is not listed in seeds ({list(params.seeds)})")
    seed, spec, model, steps = int(seed_text), params.tasks[target], params.model, params.adapt
    backbone = open_backbone(params)
    task = open_task(backbone, target, model)
    # The params this run reads: those every adapt@ stage tracks and its method's own (tracked through
    # results/method_inputs/<method>.json); its checkpoint is valid for them and dvclive logs them.
    stage, keys = stage_name(target, method, seed), (*tracked_keys("adapt", target), *KNOBS[method])
    runs, resumes = {}, []
    template = template_accuracy(backbone, task, model, params.numerics)
    # Step-0 metrics per starting state: most methods start every k from the same prompt (the k-shot draw cuts the
    # training split only), so the stage scores that prompt on dev and test once, not once per k.
    initial: dict[str, dict[str, dict[str, float]]] = {}
    for k in spec.k_shot:
        shot = few_shot_task(task, k, seed)
        # Method inputs: the target (spot, cpt, ptuning), the source teachers (spot, attempt), the per-method knobs.
        context = MethodContext(
            backbone, model, steps, seed, task=shot, sources=params.source_tasks, options=params.method_options,
            freeze_shared=params.freeze_shared,
        )
        built = build(method, context)
        rows = hashlib.sha256(repr(shot.splits["train"].token_ids).encode()).hexdigest()[:16]
        start = _init_identity(built.module)
        resume = checkpointer(
            f"{stage}/{k_label(k)}", params, keys, backbone, seed=seed, k=k, rows=rows,
            data=task.info.source_sha256, init=start,
        )
        config = TrainConfig(
            steps=steps.steps, param_groups=built.groups, warmup_steps=steps.warmup_steps, seed=seed, checkpoint=resume
        )
        trained = fit_and_evaluate(
            backbone, built.module, shot, model, config, f"{stage} k={k}", spec.metrics, params.dev,
            initial=initial.get(start),
        )
        if trained.initial is not None:
            initial.setdefault(start, trained.initial)
        summary = {"target": target, "method": method, "seed": seed, "k": k,
                   "train_examples": len(shot.splits["train"]), **trained.summary(), **built.extras}
        summary["majority_rate"] = trained.metrics["test"]["majority_rate"]
        summary["template_accuracy"] = template
        meta = artifact_meta(backbone, model, params.numerics, method=method, seed=seed, k=k, **task_meta(task))
        runs[k_label(k)] = FinishedRun({"params": built.module.export()}, meta, summary, trained.result)
        resumes.append(resume)  # kept until every k is written: a killed stage resumes the finished k's at once
    out = stage_dir(target, method, seed)
    write_run_folders(out, timing_file(target, method, seed), runs, stage, read_sections(params.raw, keys))
    for resume in resumes:
        resume.clear()
    scores = ", ".join(f"k={k}: {r.metrics['test']['accuracy']:.3f}" for k, r in zip(spec.k_shot, runs.values()))
    return f"{method} on {target}, seed {seed}: test accuracy {scores} -> {out}"


def template_accuracy(backbone: Backbone, task: TaskData, model: ModelSettings, numerics: NumericsSettings) -> float:
    """Test accuracy of the template alone (no prompt, no training), the same for every method, seed and k of a
    target: the target's first adapt@ stage scores it, the others read it back (pipeline.store.memo).

    The key names what the score is computed from; each is an input every adapt@ stage already depends on, so a
    stage that reads the memo writes the bytes it would have computed.
    """
    test = task.splits["test"]
    rows = hashlib.sha256(repr((test.token_ids, test.labels, test.markers)).encode()).hexdigest()
    payload = {
        "score": "template_accuracy", "task": task.name, "rows": rows, "label_words": task.labels.token_ids,
        "backbone": backbone.info.fingerprint, "dtype": dtype_name(backbone.dtype), "device": backbone.device.type,
        "numerics": numerics.record(), "eval_batch_size": model.eval_batch_size,
        "torch": torch.__version__, "transformers": transformers.__version__,
    }
    return remembered(MEMO_DIR, payload, lambda: round(evaluate_template(backbone, task, model), 6))


def _init_identity(module: nn.Module) -> str:
    """The starting point (e.g. mpt's P and L from distill): a new P must not resume an old checkpoint."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode() + tensor.detach().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]
