"""Stochastic task sampling over examples-proportional mixing (MPT's source training)."""

from __future__ import annotations

import numpy as np

from pipeline.errors import PipelineError


class EpochStream:
    """Endless shuffled passes over ``size`` example indices: every example once per epoch."""

    def __init__(self, size: int, rng: np.random.Generator) -> None:
        self.size, self.rng = size, rng
        self.order: list[int] = []

    def take(self, count: int) -> list[int]:
        taken = []
        while len(taken) < count:
            if not self.order:
                self.order = self.rng.permutation(self.size).tolist()
            taken.append(self.order.pop())
        return taken


class TaskSampler:
    """Draw mixed-task batches: K ~ U{2..κ} tasks per batch, chosen and filled in proportion to task size.

    Returns (task index, example index) pairs; κ is the number of source tasks.
    """

    def __init__(self, sizes: list[int], batch_size: int, seed: int, min_tasks: int = 2) -> None:
        if len(sizes) < min_tasks:
            raise PipelineError(f"params.yaml: source_tasks: distillation needs at least {min_tasks} tasks, got {len(sizes)}")
        if min(sizes) <= 0:
            raise PipelineError("distillation: every source task needs at least one cached teacher example")
        self.sizes = np.asarray(sizes, dtype=np.float64)
        self.batch_size, self.min_tasks = batch_size, min_tasks
        self.rng = np.random.default_rng(seed)
        self.streams = [EpochStream(size, self.rng) for size in sizes]

    def draw_task_count(self) -> int:
        return int(self.rng.integers(self.min_tasks, len(self.sizes) + 1))  # inclusive of κ

    def draw(self) -> list[tuple[int, int]]:
        count = self.draw_task_count()
        tasks = self.rng.choice(len(self.sizes), size=count, replace=False, p=self.sizes / self.sizes.sum())
        shares = self.sizes[tasks] / self.sizes[tasks].sum()
        # At least one example per chosen task, the rest examples-proportional.
        per_task = np.ones(count, dtype=int) + self.rng.multinomial(max(self.batch_size - count, 0), shares)
        pairs = []
        for task, quota in zip(tasks.tolist(), per_task.tolist()):
            pairs.extend((task, index) for index in self.streams[task].take(quota))
        return pairs
