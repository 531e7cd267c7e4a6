"""Split metrics on known inputs: Matthews correlation (binary and multiclass) and the optional-metric switch."""

from __future__ import annotations

import math

import pytest
import torch

from pipeline.data.batching import EncodedSplit
from pipeline.training.evaluate import matthews_corrcoef, split_metrics


def test_binary_mcc_from_the_confusion_matrix():
    # TP = 2, TN = 2, FP = 1, FN = 1: (2·2 - 1·1) / sqrt(3·3·3·3) = 1/3
    labels = [1, 1, 1, 0, 0, 0]
    predictions = [1, 1, 0, 0, 0, 1]
    assert matthews_corrcoef(predictions, labels, 2) == pytest.approx(1 / 3)


def test_binary_mcc_can_be_negative():
    # TP = 2, FN = 1, FP = 1, TN = 0: (0 - 1) / sqrt(3·3·1·1) = -1/3
    assert matthews_corrcoef([1, 0, 1, 1], [1, 1, 1, 0], 2) == pytest.approx(-1 / 3)


def test_multiclass_mcc_by_hand():
    labels = [0, 0, 1, 1, 2, 2]
    predictions = [0, 1, 1, 1, 2, 0]
    # c = 4, s = 6, predicted counts p = (2, 3, 1), true counts t = (2, 2, 2)
    # (4·6 - (4 + 6 + 2)) / sqrt((36 - 14)(36 - 12)) = 12 / sqrt(528)
    assert matthews_corrcoef(predictions, labels, 3) == pytest.approx(12 / math.sqrt(528))


def test_mcc_extremes():
    labels = [0, 1, 2, 0, 1, 2]
    assert matthews_corrcoef(labels, labels, 3) == pytest.approx(1.0)
    assert matthews_corrcoef([1, 0, 1, 0], [0, 1, 0, 1], 2) == pytest.approx(-1.0)
    # One class predicted for everything: undefined, reported as 0 (no information), never NaN.
    assert matthews_corrcoef([0, 0, 0, 0], [0, 1, 0, 1], 2) == 0.0


def test_mcc_is_computed_only_when_asked():
    split = EncodedSplit(token_ids=[[1]] * 4, labels=[0, 1, 1, 0], pad_id=0)
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0], [2.0, 0.0]])  # predictions 0, 1, 0, 0
    plain = split_metrics(logits, split)
    assert "mcc" not in plain and plain["accuracy"] == 0.75
    asked = split_metrics(logits, split, ("accuracy", "macro_f1", "mcc"))
    # TP = 1, TN = 2, FP = 0, FN = 1: (2 - 0) / sqrt(1·3·2·2) = 1/sqrt(3)
    assert asked["mcc"] == pytest.approx(1 / math.sqrt(3))
    assert {k: v for k, v in asked.items() if k != "mcc"} == plain


@pytest.mark.parametrize("words", [[" positive", " negative"], [" good movie", " bad"]])
def test_an_evaluation_pass_runs_a_fixed_prompt_once_and_scores_as_the_prompt_in_every_row(monkeypatch, words):
    """predict over length-sorted batches of several lengths: a causal LM's fixed (l, d) prompt goes through the
    model once for the whole pass (its keys/values expanded to every batch) and scores within 1e-5 of the same
    prompt written into every row, which never takes that path (as attempt's per-input prompts)."""
    from tiny import WORDS, tiny_backbone

    from pipeline.training.evaluate import predict

    backbone = tiny_backbone("causal")
    texts = [" ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(2 + i % 9)) + " sentiment :" for i in range(13)]
    ids = [row[mask.bool()].tolist() for row, mask in zip(*backbone.tokenize(texts, 32).values())]
    split = EncodedSplit(ids, [i % 2 for i in range(13)], backbone.tokenizer.pad_token_id)
    spans = [(min(len(ids[r]) for r in rows), max(len(ids[r]) for r in rows)) for rows in split.length_sorted_batches(4)]
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])) and spans[0] != spans[-1]  # batches by length
    labels = backbone.label_words(words, "test")
    prompt = backbone.sample_vocab_embeddings(4, torch.Generator().manual_seed(0))
    calls = []
    compute = backbone._prompt_keys_values
    monkeypatch.setattr(backbone, "_prompt_keys_values", lambda p: calls.append(1) or compute(p))

    def shared(batch):
        return backbone(prompt, batch.input_ids, batch.attention_mask, labels).logits

    def per_row(batch):
        rows = prompt.unsqueeze(0).expand(batch.input_ids.shape[0], -1, -1)
        return backbone(rows, batch.input_ids, batch.attention_mask, labels).logits

    cached = predict(shared, split, 4, "cpu")
    assert len(calls) == 1  # four batches, one run of the prompt
    plain = predict(per_row, split, 4, "cpu")
    assert len(calls) == 1 and cached.shape == (13, 2)
    assert torch.allclose(cached, plain, atol=1e-5)
