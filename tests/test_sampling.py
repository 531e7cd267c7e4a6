"""Stochastic task sampling: K within [2, κ], examples-proportional, every example in turn."""

from collections import Counter

import pytest

from pipeline.errors import PipelineError
from pipeline.data.sampling import EpochStream, TaskSampler


@pytest.mark.parametrize("kappa", [2, 3, 5])
def test_task_count_within_two_and_kappa(kappa):
    sampler = TaskSampler([50] * kappa, batch_size=8, seed=0)
    counts = [sampler.draw_task_count() for _ in range(500)]
    assert min(counts) == 2 and max(counts) == kappa  # both ends are reached
    batches = [sampler.draw() for _ in range(200)]
    for batch in batches:
        assert len(batch) == 8
        assert 2 <= len({task for task, _ in batch}) <= kappa


def test_examples_proportional_mixing():
    sampler = TaskSampler([1000, 100, 100], batch_size=16, seed=1)
    drawn = Counter(task for _ in range(400) for task, _ in sampler.draw())
    assert drawn[0] > 2 * drawn[1] and drawn[0] > 2 * drawn[2]


def test_rows_stay_inside_each_task():
    sampler = TaskSampler([5, 7, 3], batch_size=6, seed=2)
    for _ in range(100):
        for task, row in sampler.draw():
            assert 0 <= row < [5, 7, 3][task]


def test_epoch_stream_visits_every_example_once_per_epoch():
    import numpy as np

    stream = EpochStream(10, np.random.default_rng(0))
    assert sorted(stream.take(10)) == list(range(10))


def test_needs_two_tasks():
    with pytest.raises(PipelineError, match="source_tasks"):
        TaskSampler([10], batch_size=4, seed=0)


def test_same_seed_same_batches():
    a, b = TaskSampler([9, 9, 9], 4, seed=3), TaskSampler([9, 9, 9], 4, seed=3)
    assert [a.draw() for _ in range(20)] == [b.draw() for _ in range(20)]
