"""Training and evaluating one prompt on one task: used by source teachers and every target method."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace

import torch
from torch import nn
from tqdm.auto import tqdm

from pipeline.model.backbone import Backbone
from pipeline.data.batching import Batch, TaskData, shuffled_batches
from pipeline.training.evaluate import evaluate_prompt
from pipeline.training.losses import task_loss
from pipeline.config.params import DevSettings, ModelSettings
from pipeline.training.loop import TrainConfig, TrainResult, train, trainable_parameter_count
from pipeline.training.selection import DevCurve


@dataclass
class SingleTaskRun:
    """A trained prompt module with its training record and dev/test metrics."""

    module: nn.Module
    result: TrainResult
    metrics: dict[str, dict[str, float]]
    trainable_params: int
    selection: dict = field(default_factory=dict)  # the dev curve, the rule and selected step, the zero-step scores
    # The initial prompt's metrics per split (dev, test), where a dev curve scored it: a caller that starts another
    # run from the same state (another k of one adapt@ stage) hands them back rather than scoring it again.
    initial: dict[str, dict[str, float]] | None = None

    def summary(self) -> dict:
        return {
            **self.metrics,
            **self.selection,
            "trainable_params": self.trainable_params,
            "steps": self.result.steps,
            # An imported prompt has no training history; 0.0 would read as a perfect loss.
            "final_train_loss": round(self.result.final_loss, 6) if self.result.history else None,
        }


def fit_and_evaluate(
    backbone: Backbone,
    module: nn.Module,
    task: TaskData,
    model: ModelSettings,
    config: TrainConfig,
    description: str,
    extra: tuple[str, ...] = (),
    dev: DevSettings | None = None,
    initial: dict[str, dict[str, float]] | None = None,
) -> SingleTaskRun:
    """Train ``module`` on ``task``'s train split, then score dev and test.

    ``module(batch)`` gives what the backbone reads for that batch: a (l, d) or (B, l, d) prompt or a ``Prompt``.
    ``extra`` names optional metrics to compute as well (a task's ``metrics``, e.g. ``("mcc",)``).
    With ``dev`` (eval_every > 0), dev accuracy is recorded at step 0, every eval_every steps and the last step,
    the test split is scored at step 0 as well, and test is scored on the checkpoint ``dev.select`` picks; that
    checkpoint's dev metrics are the curve's own, never scored twice. ``initial``: the step-0 metrics of this very
    starting state on this task's dev and test splits (:attr:`SingleTaskRun.initial` of an earlier run), used
    instead of scoring it again.
    """
    device = backbone.device
    train_split = task.splits["train"]
    lengths = [len(tokens) for tokens in train_split.token_ids]
    rows = shuffled_batches(len(train_split), model.batch_size, config.seed, lengths)
    batches = (train_split.batch(next(rows)).to(device) for _ in iter(int, 1))

    def compute_loss(prompt_module: nn.Module, batch: Batch) -> dict[str, torch.Tensor]:
        scores = backbone(prompt_module(batch), batch.input_ids, batch.attention_mask, task.labels)
        return {"loss": task_loss(scores.logits, batch.labels)}

    params = trainable_parameter_count(module)
    curve = None
    if dev is not None and dev.eval_every > 0:

        def scores(prompt_module: nn.Module, step: int) -> dict[str, dict[str, float]]:
            if step == 0 and initial is not None:
                return initial
            splits = ("dev", "test") if step == 0 else ("dev",)  # test only for the zero-step score
            # Every metric, not accuracy alone: the selected step's dev metrics are the run's final ones.
            return evaluate_prompt(backbone, prompt_module, task, splits, model.eval_batch_size, extra)

        curve = DevCurve(scores, dev.eval_every, dev.select)
        config = replace(config, dev=curve)
    result = train(module, batches, compute_loss, config, description)
    known = {"dev": curve.selected_dev} if curve is not None and curve.selected_dev is not None else {}
    run = _evaluated(backbone, module, task, model, result, params, extra, description, known)
    if curve is not None:
        run.selection = {
            "dev_curve": [[step, round(accuracy, 6)] for step, accuracy in curve.points],
            "select": curve.rule,
            "selected_step": curve.selected_step(config.steps),
            "zero_step": {split: round(accuracy, 6) for split, accuracy in sorted(curve.zero_step.items())},
        }
        run.initial = curve.initial
    return run


def evaluate_template(backbone: Backbone, task: TaskData, model: ModelSettings, split: str = "test") -> float:
    """Accuracy of the template alone (an l = 0 prompt, no training): what the frozen LM does with no prompt."""
    empty = torch.zeros(0, backbone.hidden_size, device=backbone.device)
    scores = evaluate_prompt(backbone, lambda batch: empty, task, (split,), model.eval_batch_size)
    return scores[split]["accuracy"]


def evaluate_untrained(
    backbone: Backbone, module: nn.Module, task: TaskData, model: ModelSettings, description: str | None = None
) -> SingleTaskRun:
    """A prompt trained elsewhere (an imported teacher): zero steps here, dev/test metrics as for a trained one."""
    nothing = TrainResult(history=[], steps=0, seconds=0.0)
    return _evaluated(backbone, module, task, model, nothing, trainable_parameter_count(module), (), description)


def _evaluated(
    backbone: Backbone,
    module: nn.Module,
    task: TaskData,
    model: ModelSettings,
    result: TrainResult,
    params: int,
    extra: tuple[str, ...] = (),
    description: str | None = None,
    known: dict[str, dict[str, float]] | None = None,
) -> SingleTaskRun:
    """Dev and test metrics of ``module`` as it is; a split in ``known`` (its metrics for this state) is not scored."""
    module.eval()
    known = known or {}
    missing = tuple(split for split in ("dev", "test") if split not in known)
    scored = evaluate_prompt(backbone, module, task, missing, model.eval_batch_size, extra, description)
    metrics = {split: dict(known[split]) if split in known else scored[split] for split in ("dev", "test")}
    return SingleTaskRun(module=module, result=result, metrics=metrics, trainable_params=params)


@torch.inference_mode()
def teacher_outputs(
    backbone: Backbone,
    prompt: torch.Tensor,
    task: TaskData,
    count: int,
    batch_size: int,
    description: str | None = None,
) -> dict[str, torch.Tensor]:
    """Label logits (N, C) and prediction-position hidden states (N, d) of the first N training rows.

    Cached at the source stage so that distillation never runs a teacher forward pass. With a ``description``
    (the stage), a progress bar on stderr counts the batches.
    """
    split = task.splits["train"]
    rows = list(range(min(count, len(split))))
    logits, hidden = [], []
    starts = range(0, len(rows), batch_size)
    label = f"{description}: teacher outputs" if description else None
    for start in tqdm(starts, desc=label, unit="batch", disable=label is None, file=sys.stderr):
        batch = split.batch(rows[start : start + batch_size]).to(backbone.device)
        scores = backbone(prompt, batch.input_ids, batch.attention_mask, task.labels)
        logits.append(scores.logits.float().cpu())
        hidden.append(scores.hidden.float().cpu())
    return {"logits": torch.cat(logits), "hidden": torch.cat(hidden), "rows": torch.tensor(rows)}
