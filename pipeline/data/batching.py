"""Tokenised tasks held in memory, and dynamically padded batches cut from them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from pipeline.model.backbone import Backbone, LabelWords
from pipeline.data.prepared import TaskInfo, load_prepared
from pipeline.data.markers import MARKER, encode_marked

SPLITS = ("train", "dev", "test")


@dataclass
class Batch:
    """A padded batch: ids/mask (B, T), labels (B,), rows (B,) = example indices in their split.

    ``marker_positions`` (B, m): the token index where each of the template's m ``[P]`` markers stood, for a task
    whose template has markers (see pipeline.data.markers); None otherwise.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    rows: torch.Tensor
    task_ids: torch.Tensor | None = None
    marker_positions: torch.Tensor | None = None

    def shard(self, index: int, count: int) -> Batch:
        """Rows ``index::count`` of the batch: one process's slice under data parallelism."""
        picked = {k: (v[index::count] if isinstance(v, torch.Tensor) else v) for k, v in self.__dict__.items()}
        return Batch(**picked)

    def to(self, device: torch.device | str) -> Batch:
        moved = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in self.__dict__.items()}
        return Batch(**moved)


def collate(
    token_ids: list[list[int]],
    labels: list[int],
    rows: list[int],
    pad_id: int,
    task_ids: list[int] | None = None,
    markers: list[list[int]] | None = None,
) -> Batch:
    """Right-pad token lists to the longest one in this batch (dynamic padding); ``markers`` as in :class:`Batch`."""
    longest = max(len(tokens) for tokens in token_ids)
    ids = torch.full((len(token_ids), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(token_ids), longest), dtype=torch.long)
    for i, tokens in enumerate(token_ids):
        ids[i, : len(tokens)] = torch.tensor(tokens)
        mask[i, : len(tokens)] = 1
    tasks = None if task_ids is None else torch.tensor(task_ids)
    positions = None if markers is None else torch.tensor(markers, dtype=torch.long).view(len(token_ids), -1)
    return Batch(ids, mask, torch.tensor(labels), torch.tensor(rows), tasks, positions)


@dataclass
class EncodedSplit:
    """One split tokenised once; batches are padded only to their own longest row.

    ``markers``: per row, the token positions of the template's ``[P]`` markers (None: the template has none).
    """

    token_ids: list[list[int]]
    labels: list[int]
    pad_id: int
    markers: list[list[int]] | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, rows: list[int], task_id: int | None = None) -> Batch:
        task_ids = None if task_id is None else [task_id] * len(rows)
        markers = None if self.markers is None else [self.markers[r] for r in rows]
        picked = [self.token_ids[r] for r in rows]
        return collate(picked, [self.labels[r] for r in rows], rows, self.pad_id, task_ids, markers)

    def length_sorted_batches(self, batch_size: int) -> list[list[int]]:
        """Rows grouped by length, so evaluation pads little (order does not change metrics)."""
        order = sorted(range(len(self)), key=lambda r: len(self.token_ids[r]))
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


@dataclass
class TaskData:
    """A prepared task, tokenised for one backbone, with its label words encoded."""

    info: TaskInfo
    labels: LabelWords
    splits: dict[str, EncodedSplit] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.info.name


def load_task(backbone: Backbone, task_dir: Path, max_length: int) -> TaskData:
    """Load ``data/prepared/<task>`` and tokenise every split with the backbone's tokenizer.

    A template with ``[P]`` markers has them removed from the text and their token positions kept per row.
    """
    dataset, info = load_prepared(task_dir)
    labels = backbone.label_words(info.label_words, where=f"params.yaml: tasks.{info.name}.label_words")
    markers = info.template.count(MARKER)
    splits = {}
    for split in SPLITS:
        texts, positions = list(dataset[split]["input"]), None
        if markers:
            where = f"{task_dir} ({split})"
            token_ids, positions = encode_marked(backbone, texts, max_length, markers, where)
        else:
            token_ids = encode_texts(backbone, texts, max_length)
        pad = backbone.tokenizer.pad_token_id
        splits[split] = EncodedSplit(token_ids, list(dataset[split]["label"]), pad, positions)
    return TaskData(info=info, labels=labels, splits=splits)


def encode_texts(backbone: Backbone, texts: list[str], max_length: int) -> list[list[int]]:
    """Token ids of each filled-in text, unpadded (batches pad later, each to its own longest row)."""
    if not texts:
        return []
    encoded = backbone.tokenize(texts, max_length)
    return [row[mask.bool()].tolist() for row, mask in zip(encoded["input_ids"], encoded["attention_mask"])]


BUCKET_BATCHES = 50  # batches per length bucket: wide enough to stay random, narrow enough to cut padding


def shuffled_batches(size: int, batch_size: int, seed: int, lengths: list[int] | None = None):
    """Endless batches of row indices, reshuffled every epoch, seeded; every row once per epoch.

    With ``lengths``, batches are length-bucketed: each epoch's shuffled order is cut into chunks of
    ``BUCKET_BATCHES`` batches, each chunk is sorted by length before it is cut into batches, and the batch
    order is shuffled again, so rows of similar length share a batch and dynamic padding adds little.
    """
    rng = np.random.default_rng(seed)
    full = size >= batch_size
    while True:
        order = rng.permutation(size).tolist()
        if lengths is not None:
            chunk = batch_size * BUCKET_BATCHES
            chunks = [sorted(order[start : start + chunk], key=lengths.__getitem__) for start in range(0, size, chunk)]
            order = [row for rows in chunks for row in rows]
        starts = range(0, size - batch_size + 1 if full else 1, batch_size)
        batches = [order[start : start + batch_size] for start in starts]
        if lengths is not None:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        yield from batches
