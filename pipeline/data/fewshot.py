"""The k-shot training subset of a target task: drawn per seed, class-balanced, the same for every method.

The draw depends only on the training labels, the seed and k, never on the method, so every method of one
(target, k, seed) trains on the same examples and their scores can be compared pair by pair. For one seed the
draws are nested: the k = 16 examples are among the k = 64 ones, so a learning curve over k adds data rather
than swapping it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields, replace

import numpy as np

from pipeline.data.batching import EncodedSplit, TaskData
from pipeline.errors import PipelineError
from pipeline.config.tasks import ALL, KShot

# Mixed into the seed so the draw is independent of the batch order, which the same seed also drives.
DRAW_STREAM = 0x6B53686F74  # "kShot"


def class_quotas(capacities: Sequence[int], k: int) -> list[int]:
    """How many of ``k`` examples each class gets: round-robin over the classes in the given order, skipping full
    ones, so quotas differ by at most one unless a class runs out (its share goes to the others).

    Round-robin makes each quota grow with k, which is what keeps the draws nested.
    """
    if k > sum(capacities):
        raise ValueError(f"k = {k} exceeds the {sum(capacities)} examples")
    quotas = [0] * len(capacities)
    given = 0
    while given < k:
        for c, capacity in enumerate(capacities):
            if given < k and quotas[c] < capacity:
                quotas[c] += 1
                given += 1
    return quotas


def draw_rows(labels: Sequence[int], k: KShot, seed: int, where: str = "k_shot") -> list[int]:
    """Sorted row indices of the k-shot subset of a training split with these ``labels``.

    ``k`` = "all" keeps every row. Otherwise each class's rows are shuffled by the seed and each class
    contributes the first rows of its shuffle, as many as :func:`class_quotas` gives it (classes in a seeded
    order, so which class gets the odd extra example varies with the seed, not always the first label).
    ``where`` is the params key named when k is larger than the split.
    """
    if k == ALL:
        return list(range(len(labels)))
    if k > len(labels):
        raise PipelineError(
            f"params.yaml: {where}: k = {k} is larger than the training split ({len(labels)} examples)"
        )
    rng = np.random.default_rng([DRAW_STREAM, seed])
    classes = sorted(set(labels))
    classes = [classes[i] for i in rng.permutation(len(classes))]
    rows = np.arange(len(labels))
    label_array = np.asarray(labels)
    shuffled = [rng.permutation(rows[label_array == c]) for c in classes]
    quotas = class_quotas([len(r) for r in shuffled], k)
    return sorted(int(row) for r, quota in zip(shuffled, quotas) for row in r[:quota])


def few_shot_task(task: TaskData, k: KShot, seed: int) -> TaskData:
    """``task`` with its training split cut to the k-shot draw of ``seed`` (dev and test untouched)."""
    train = task.splits["train"]
    rows = draw_rows(train.labels, k, seed, where=f"tasks.{task.name}.k_shot")
    # Every list field of a split holds one entry per row (token ids, labels, marker positions...): cut them all,
    # so a per-row field added to EncodedSplit later is cut too rather than silently misaligned.
    per_row = {f.name: getattr(train, f.name) for f in fields(EncodedSplit)}
    picked = {name: [value[r] for r in rows] for name, value in per_row.items() if isinstance(value, list)}
    return replace(task, splits={**task.splits, "train": replace(train, **picked)})
