"""The k-shot draw: class balance, one draw for every method, another for another seed, nested over k."""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace

import pytest

from pipeline.data.batching import EncodedSplit, TaskData
from pipeline.errors import PipelineError
from pipeline.data.fewshot import class_quotas, draw_rows, few_shot_task

# 60 rows: 30 of class 0, 20 of class 1, 10 of class 2, interleaved like a shuffled split.
LABELS = [0, 1, 0, 2, 0, 1] * 10


def test_class_quotas_balance_and_hand_a_full_class_share_to_the_others():
    assert class_quotas([30, 20, 10], 9) == [3, 3, 3]
    assert class_quotas([30, 20, 10], 10) == [4, 3, 3]  # the odd one goes to the first class in order
    assert class_quotas([30, 20, 10], 45) == [18, 17, 10]  # class 2 runs out at 10
    assert class_quotas([30, 20, 10], 60) == [30, 20, 10]
    with pytest.raises(ValueError):
        class_quotas([1, 1], 3)


@pytest.mark.parametrize("k", [3, 12, 16, 48])
def test_draw_is_class_balanced(k):
    counts = Counter(LABELS[row] for row in draw_rows(LABELS, k, seed=0))
    assert sum(counts.values()) == k
    if k <= 30:  # every class has k / 3 rows to give
        assert max(counts.values()) - min(counts.values()) <= 1
    else:  # class 2 gives all 10 it has, the rest is split evenly
        assert counts[2] == 10 and abs(counts[0] - counts[1]) <= 1


def test_same_seed_and_k_give_the_same_draw_whatever_the_method():
    # The draw takes no method argument at all; calling it twice (as adapt@t-mpt-s and adapt@t-pt-s do) repeats.
    assert draw_rows(LABELS, 16, seed=3) == draw_rows(list(LABELS), 16, seed=3)


def test_other_seeds_draw_other_examples():
    draws = {tuple(draw_rows(LABELS, 16, seed=seed)) for seed in range(5)}
    assert len(draws) == 5


def test_draws_of_one_seed_are_nested_over_k():
    for seed in range(4):
        previous: set[int] = set()
        for k in (3, 8, 16, 40, 60):
            rows = set(draw_rows(LABELS, k, seed=seed))
            assert previous <= rows
            previous = rows


def test_all_keeps_every_row_in_order():
    assert draw_rows(LABELS, "all", seed=5) == list(range(60))


def test_k_above_the_split_names_the_key():
    with pytest.raises(PipelineError, match=r"tasks\.tgt\.k_shot: k = 61 is larger than the training split \(60"):
        draw_rows(LABELS, 61, seed=0, where="tasks.tgt.k_shot")


def test_few_shot_task_cuts_only_the_training_split():
    def split(labels: list[int]) -> EncodedSplit:
        return EncodedSplit(token_ids=[[10 + i] for i in range(len(labels))], labels=labels, pad_id=0)

    info = SimpleNamespace(name="tgt")  # only the name is read
    task = TaskData(info=info, labels=None, splits={"train": split(LABELS), "dev": split([0, 1]), "test": split([1])})
    small = few_shot_task(task, 6, seed=1)
    with pytest.raises(PipelineError, match=r"tasks\.tgt\.k_shot"):
        few_shot_task(task, 100, seed=1)
    rows = draw_rows(LABELS, 6, seed=1)
    assert small.splits["train"].labels == [LABELS[r] for r in rows]
    assert small.splits["train"].token_ids == [[10 + r] for r in rows]
    assert small.splits["dev"] is task.splits["dev"] and small.splits["test"] is task.splits["test"]
    assert len(task.splits["train"]) == 60  # the original is untouched
