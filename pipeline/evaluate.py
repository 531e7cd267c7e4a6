"""Metrics on a split: accuracy, macro-F1, loss, and the majority-class rate for context."""

from __future__ import annotations

from collections.abc import Callable

import torch

from pipeline.backbone import Backbone
from pipeline.batching import Batch, EncodedSplit
from pipeline.losses import task_loss


def accuracy(predictions: list[int], labels: list[int]) -> float:
    return sum(p == y for p, y in zip(predictions, labels)) / max(len(labels), 1)


def macro_f1(predictions: list[int], labels: list[int], classes: int) -> float:
    """Unweighted mean of per-class F1; a class absent from both predictions and labels is skipped."""
    scores = []
    for c in range(classes):
        tp = sum(p == c and y == c for p, y in zip(predictions, labels))
        fp = sum(p == c and y != c for p, y in zip(predictions, labels))
        fn = sum(p != c and y == c for p, y in zip(predictions, labels))
        if tp + fp + fn == 0:
            continue
        scores.append(2 * tp / (2 * tp + fp + fn))
    return sum(scores) / max(len(scores), 1)


def majority_rate(labels: list[int]) -> float:
    return max(labels.count(c) for c in set(labels)) / len(labels) if labels else 0.0


@torch.inference_mode()
def predict(
    score: Callable[[Batch], torch.Tensor], split: EncodedSplit, batch_size: int, device: torch.device | str
) -> torch.Tensor:
    """Label logits (N, C) for every row of ``split``, in row order; ``score`` maps a batch to logits."""
    outputs: dict[int, torch.Tensor] = {}
    for rows in split.length_sorted_batches(batch_size):
        logits = score(split.batch(rows).to(device)).float().cpu()
        outputs.update(zip(rows, logits))
    return torch.stack([outputs[r] for r in range(len(split))])


def split_metrics(logits: torch.Tensor, split: EncodedSplit) -> dict[str, float]:
    labels = split.labels
    predictions = logits.argmax(dim=-1).tolist()
    return {
        "accuracy": accuracy(predictions, labels),
        "macro_f1": macro_f1(predictions, labels, logits.shape[1]),
        "loss": float(task_loss(logits, torch.tensor(labels))),
        "majority_rate": majority_rate(labels),
    }


def evaluate_prompt(
    backbone: Backbone, prompt: Callable[[Batch], torch.Tensor], task, splits: tuple[str, ...], batch_size: int
) -> dict[str, dict[str, float]]:
    """Metrics of a prompt on the named splits of a :class:`~pipeline.batching.TaskData`.

    ``prompt`` maps a batch to its (l, d) or (B, l, d) prompt.
    """

    def score(batch: Batch) -> torch.Tensor:
        return backbone(prompt(batch), batch.input_ids, batch.attention_mask, task.labels).logits

    return {
        split: split_metrics(predict(score, task.splits[split], batch_size, backbone.device), task.splits[split])
        for split in splits
    }
