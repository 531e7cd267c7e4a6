"""Distilling source teachers into one shared prompt P with low-rank task factors (MPT source training).

L_total = L_task + λ · (KL_T(teacher ‖ student) + MSE(hidden_teacher, hidden_student)), Wang et al. 2023,
with batches drawn by stochastic task sampling over examples-proportional mixing.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from pipeline.model.backbone import Backbone, Prompt, Scores
from pipeline.data.batching import Batch, TaskData, collate
from pipeline.training.checkpoint import Checkpointer
from pipeline.training.losses import distillation_loss, task_loss
from pipeline.methods.mpt import MultitaskPrompt
from pipeline.data.sampling import TaskSampler
from pipeline.config.params import DistillSettings, StepSettings
from pipeline.training.loop import TrainConfig, TrainResult, train


def mixed_batches(tasks: list[TaskData], sizes: list[int], batch_size: int, seed: int) -> Iterator[Batch]:
    """Endless batches mixing K ~ U{2..κ} source tasks; ``rows`` index each task's cached teacher outputs."""
    sampler = TaskSampler(sizes, batch_size, seed)
    pad_id = tasks[0].splits["train"].pad_id
    while True:
        pairs = sampler.draw()
        splits = [tasks[t].splits["train"] for t, _ in pairs]
        yield collate(
            [split.token_ids[row] for split, (_, row) in zip(splits, pairs)],
            [split.labels[row] for split, (_, row) in zip(splits, pairs)],
            [row for _, row in pairs],
            pad_id,
            [t for t, _ in pairs],
        )


def distill(
    backbone: Backbone,
    tasks: list[TaskData],
    teachers: list[dict[str, torch.Tensor]],
    settings: DistillSettings,
    steps: StepSettings,
    seed: int,
    batch_size: int,
    checkpoint: Checkpointer | None = None,
) -> tuple[MultitaskPrompt, TrainResult]:
    """Train the student ``P ∘ (U_k V_k)``; P starts as the mean teacher prompt, so step 0 is a sensible average."""
    prompts = torch.stack([t["prompt"] for t in teachers])  # (K, l, d)
    generator = torch.Generator().manual_seed(seed)
    student = MultitaskPrompt(
        prompts.mean(dim=0), len(tasks), settings.rank, generator, settings.decomposition
    ).to(backbone.device)
    # The factors start at 1, not at embedding scale, so they get their own learning rate.
    groups = [{"params": [student.shared], "lr": steps.lr}]
    if student.factors:
        groups.append({"params": student.factors, "lr": steps.factor_lr})
    config = TrainConfig(
        steps=steps.steps, param_groups=groups, warmup_steps=steps.warmup_steps, seed=seed, checkpoint=checkpoint
    )
    sizes = [len(t["rows"]) for t in teachers]
    device = backbone.device
    batches = (b.to(device) for b in mixed_batches(tasks, sizes, batch_size, config.seed))

    one_pass = all(task.labels.single_token for task in tasks)

    def compute_loss(module: nn.Module, batch: Batch) -> dict[str, torch.Tensor]:
        # Each task's prompt once (K, l, d), with the row -> prompt index: the backbone runs K prompts, not B.
        tasks_present, prompt_of_row = batch.task_ids.unique(return_inverse=True)
        prompt = Prompt(module(tasks_present), rows=prompt_of_row)
        # With single-token label words, one forward serves the whole mixed batch; label sets differ between
        # tasks, so only the cheap label-word product is done per task.
        hidden = backbone.prediction_hidden(prompt, batch.input_ids, batch.attention_mask) if one_pass else None
        totals = {"task": 0.0, "kl": 0.0, "mse": 0.0}
        for k in batch.task_ids.unique().tolist():
            group = batch.task_ids == k
            if one_pass:
                scores = Scores(logits=backbone.label_logits(hidden[group], tasks[k].labels), hidden=hidden[group])
            else:
                scores = backbone(Prompt(prompt.embeds, rows=prompt_of_row[group]), batch.input_ids[group],
                                  batch.attention_mask[group], tasks[k].labels)
            rows = batch.rows[group].cpu()
            parts = distillation_loss(
                scores.logits,
                teachers[k]["logits"][rows].to(device),
                scores.hidden,
                teachers[k]["hidden"][rows].to(device),
                settings.temperature,
            )
            weight = group.float().mean()  # average over the batch, not over tasks
            totals["task"] = totals["task"] + weight * task_loss(scores.logits, batch.labels[group])
            totals["kl"] = totals["kl"] + weight * parts["kl"]
            totals["mse"] = totals["mse"] + weight * parts["mse"]
        totals["loss"] = totals["task"] + settings.lambda_ * (totals["kl"] + totals["mse"])
        return totals

    result = train(student, batches, compute_loss, config, "distill")
    return student, result
