"""Metrics on a split: accuracy, macro-F1, loss, the majority-class rate for context, and MCC when a task asks."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable

import torch
from tqdm.auto import tqdm

from pipeline.model.backbone import Backbone
from pipeline.data.batching import Batch, EncodedSplit
from pipeline.training.losses import task_loss


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


def matthews_corrcoef(predictions: list[int], labels: list[int], classes: int) -> float:
    """Matthews correlation coefficient; for more than two classes Gorodkin's R_K, which equals MCC at two.

    From the confusion matrix: (c·s - Σ_k p_k t_k) / sqrt((s² - Σ p_k²)(s² - Σ t_k²)), with c the correct
    predictions, s the examples, p_k / t_k how often class k is predicted / true. 0.0 where undefined (every
    prediction or every label the same class), as scikit-learn does. Integer sums keep it exact.
    """
    predicted, true = [0] * classes, [0] * classes
    for p, y in zip(predictions, labels):
        predicted[p] += 1
        true[y] += 1
    s = len(labels)
    c = sum(p == y for p, y in zip(predictions, labels))
    numerator = c * s - sum(p * t for p, t in zip(predicted, true))
    denominator = (s * s - sum(p * p for p in predicted)) * (s * s - sum(t * t for t in true))
    return numerator / math.sqrt(denominator) if denominator else 0.0


# Metrics a task may ask for under tasks.<name>.metrics (pipeline.config.tasks.METRICS names them without torch);
# accuracy and macro-F1 are always computed.
OPTIONAL_METRICS = {"mcc": matthews_corrcoef}


def majority_rate(labels: list[int]) -> float:
    return max(labels.count(c) for c in set(labels)) / len(labels) if labels else 0.0


@torch.inference_mode()
def predict(
    score: Callable[[Batch], torch.Tensor],
    split: EncodedSplit,
    batch_size: int,
    device: torch.device | str,
    description: str | None = None,
) -> torch.Tensor:
    """Label logits (N, C) for every row of ``split``, in row order; ``score`` maps a batch to logits.

    With a ``description`` (``source@trec: dev``), a progress bar on stderr counts the batches.
    """
    outputs: dict[int, torch.Tensor] = {}
    batches = split.length_sorted_batches(batch_size)
    for rows in tqdm(batches, desc=description, unit="batch", disable=description is None, file=sys.stderr):
        logits = score(split.batch(rows).to(device)).float().cpu()
        outputs.update(zip(rows, logits))
    return torch.stack([outputs[r] for r in range(len(split))])


def split_metrics(logits: torch.Tensor, split: EncodedSplit, extra: tuple[str, ...] = ()) -> dict[str, float]:
    """Accuracy, macro-F1, loss and majority rate, plus the ``extra`` metrics named (e.g. ``("mcc",)``)."""
    labels = split.labels
    predictions = logits.argmax(dim=-1).tolist()
    metrics = {
        "accuracy": accuracy(predictions, labels),
        "macro_f1": macro_f1(predictions, labels, logits.shape[1]),
        "loss": float(task_loss(logits, torch.tensor(labels))),
        "majority_rate": majority_rate(labels),
    }
    for name in extra:
        if name in OPTIONAL_METRICS:  # accuracy / macro_f1 may be listed too; they are already there
            metrics[name] = OPTIONAL_METRICS[name](predictions, labels, logits.shape[1])
    return metrics


def evaluate_prompt(
    backbone: Backbone,
    prompt: Callable[[Batch], torch.Tensor],
    task,
    splits: tuple[str, ...],
    batch_size: int,
    extra: tuple[str, ...] = (),
    description: str | None = None,
) -> dict[str, dict[str, float]]:
    """Metrics of a prompt on the named splits of a :class:`~pipeline.data.batching.TaskData`.

    ``prompt`` maps a batch to its (l, d) or (B, l, d) prompt; ``extra`` names optional metrics (see split_metrics).
    With a ``description`` (the stage, e.g. ``source@trec``), each split gets a progress bar named after both.
    """

    def score(batch: Batch) -> torch.Tensor:
        return backbone(prompt(batch), batch.input_ids, batch.attention_mask, task.labels).logits

    scored: dict[str, torch.Tensor] = {}
    for split in splits:
        bar = f"{description}: {split}" if description else None
        scored[split] = predict(score, task.splits[split], batch_size, backbone.device, bar)
    return {split: split_metrics(logits, task.splits[split], extra) for split, logits in scored.items()}
