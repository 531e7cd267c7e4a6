"""Training and evaluating one prompt on one task: used by source teachers and every target method."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from pipeline.model.backbone import Backbone
from pipeline.data.batching import Batch, TaskData, shuffled_batches
from pipeline.training.evaluate import evaluate_prompt
from pipeline.training.losses import task_loss
from pipeline.config.params import ModelSettings
from pipeline.training.loop import TrainConfig, TrainResult, train, trainable_parameter_count


@dataclass
class SingleTaskRun:
    """A trained prompt module with its training record and dev/test metrics."""

    module: nn.Module
    result: TrainResult
    metrics: dict[str, dict[str, float]]
    trainable_params: int

    def summary(self) -> dict:
        return {
            **self.metrics,
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
) -> SingleTaskRun:
    """Train ``module`` on ``task``'s train split, then score dev and test.

    ``module(batch)`` gives what the backbone reads for that batch: a (l, d) or (B, l, d) prompt or a ``Prompt``.
    ``extra`` names optional metrics to compute as well (a task's ``metrics``, e.g. ``("mcc",)``).
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
    result = train(module, batches, compute_loss, config, description)
    return _evaluated(backbone, module, task, model, result, params, extra, description)


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
) -> SingleTaskRun:
    module.eval()
    metrics = evaluate_prompt(backbone, module, task, ("dev", "test"), model.eval_batch_size, extra, description)
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
