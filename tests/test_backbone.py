"""Label-word scoring on tiny random causal and encoder-decoder backbones."""

import pytest
import torch

from pipeline.model.backbone import Prompt
from pipeline.errors import PipelineError
from pipeline.methods.prompt_tuning import SoftPrompt
from tiny import tiny_backbone

TEXTS = ["good movie : sentiment", "what is the plot of the film ? answer", "bad : sentiment"]
KINDS = ["causal", "gemma3", "seq2seq"]  # tiny Llama, tiny Gemma-3 (causal, sliding window shorter than TEXTS), T5


def setup(kind):
    backbone = tiny_backbone(kind)
    encoded = backbone.tokenize(TEXTS, max_length=32)
    prompt = SoftPrompt(backbone.sample_vocab_embeddings(4, torch.Generator().manual_seed(0)))
    return backbone, encoded, prompt


def full_vocab_logits(backbone, prompt, ids, mask):
    """Reference: the model's own full-vocabulary logits at the prediction position."""
    embeds = torch.cat([prompt.expand(ids.shape[0], -1, -1), backbone.input_embeddings(ids)], dim=1)
    full_mask = torch.cat([mask.new_ones(ids.shape[0], prompt.shape[1]), mask], dim=1)
    if backbone.info.kind == "causal":
        logits = backbone.model(inputs_embeds=embeds, attention_mask=full_mask).logits
        return logits[torch.arange(ids.shape[0]), prompt.shape[1] + mask.sum(1) - 1]
    start = torch.zeros(ids.shape[0], 1, dtype=torch.long)
    return backbone.model(inputs_embeds=embeds, attention_mask=full_mask, decoder_input_ids=start).logits[:, 0]


@pytest.mark.parametrize("kind", KINDS)
def test_label_logits_match_the_full_output_layer(kind):
    backbone, enc, prompt = setup(kind)
    labels = backbone.label_words([" positive", " negative", " spam"], "test")
    with torch.no_grad():
        scores = backbone(prompt(), enc["input_ids"], enc["attention_mask"], labels)
        reference = full_vocab_logits(backbone, prompt().unsqueeze(0), enc["input_ids"], enc["attention_mask"])
    assert scores.logits.shape == (3, 3) and scores.hidden.shape == (3, backbone.hidden_size)
    assert torch.allclose(scores.logits, reference[:, labels.first_ids], atol=1e-4)


@pytest.mark.parametrize("kind", KINDS)
def test_padding_does_not_change_scores(kind):
    backbone, enc, prompt = setup(kind)
    labels = backbone.label_words([" positive", " negative"], "test")
    with torch.no_grad():
        batched = backbone(prompt(), enc["input_ids"], enc["attention_mask"], labels).logits
        for i, text in enumerate(TEXTS):
            alone = backbone.tokenize([text], max_length=32)
            single = backbone(prompt(), alone["input_ids"], alone["attention_mask"], labels).logits
            assert torch.allclose(batched[i], single[0], atol=1e-4)


@pytest.mark.parametrize("kind", KINDS)
def test_multi_token_label_is_summed_log_probability(kind):
    backbone, enc, prompt = setup(kind)
    labels = backbone.label_words([" good movie", " bad"], "test")
    assert not labels.single_token
    with torch.no_grad():
        scores = backbone(prompt(), enc["input_ids"], enc["attention_mask"], labels).logits
    assert scores.shape == (3, 2)
    assert (scores <= 0).all()  # log-probabilities
    # Normalised over the label tokens {good, movie, bad}: the first-token distribution sums to 1.
    single = backbone.label_words([" good", " movie", " bad"], "test")
    with torch.no_grad():
        first = torch.log_softmax(backbone(prompt(), enc["input_ids"], enc["attention_mask"], single).logits, -1)
    assert torch.allclose(scores[:, 1], first[:, 2], atol=1e-4)  # " bad" is one token
    assert (scores[:, 0] < first[:, 0] + 1e-6).all()  # adding " movie" can only lower the log-probability


@pytest.mark.parametrize("kind", KINDS)
def test_gradients_reach_the_prompt_and_never_the_backbone(kind):
    backbone, enc, prompt = setup(kind)
    labels = backbone.label_words([" positive", " negative"], "test")
    backbone(prompt(), enc["input_ids"], enc["attention_mask"], labels).logits.sum().backward()
    assert prompt.weight.grad is not None and prompt.weight.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in backbone.model.parameters())


@pytest.mark.parametrize("kind", ["causal", "gemma3"])
@pytest.mark.parametrize("words", [[" positive", " negative"], [" good movie", " bad"]])
def test_shared_prompt_run_once_as_a_prefix_equals_the_prompt_in_every_row(words, kind):
    """A causal LM's (l, d) prompt goes through the model once (a key/value prefix), a (B, l, d) one per row."""
    backbone, enc, prompt = setup(kind)
    labels = backbone.label_words(words, "test")
    assert backbone._batched(prompt(), 3).prefix is not None  # the shortcut is taken
    results = []
    for per_row in (False, True):
        prompt.weight.grad = None
        embeds = prompt().unsqueeze(0).expand(3, -1, -1) if per_row else prompt()
        scores = backbone(embeds, enc["input_ids"], enc["attention_mask"], labels)
        (scores.logits.logsumexp(-1).sum() + scores.hidden.square().mean()).backward()
        results.append((scores.logits.detach(), scores.hidden.detach(), prompt.weight.grad.clone()))
    (logits, hidden, grad), (row_logits, row_hidden, row_grad) = results
    assert torch.allclose(logits, row_logits, atol=1e-5) and torch.allclose(hidden, row_hidden, atol=1e-5)
    assert grad.abs().sum() > 0 and torch.allclose(grad, row_grad, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("words", [[" positive", " negative"], [" good movie", " bad"]])
def test_distinct_prompts_with_rows_equal_a_prompt_per_row(kind, words):
    """Prompt(embeds=(K, l, d), rows=(B,)) scores and back-propagates as the (B, l, d) prompts it stands for."""
    backbone, enc, _ = setup(kind)
    labels = backbone.label_words(words, "test")
    distinct = backbone.sample_vocab_embeddings(8, torch.Generator().manual_seed(1)).view(2, 4, -1)
    rows = torch.tensor([1, 0, 1])
    results = []
    for per_row in (False, True):
        leaf = distinct.clone().requires_grad_(True)
        prompt = leaf[rows] if per_row else Prompt(leaf, rows=rows)
        scores = backbone(prompt, enc["input_ids"], enc["attention_mask"], labels)
        (scores.logits.logsumexp(-1).sum() + scores.hidden.square().mean()).backward()
        results.append((scores.logits.detach(), leaf.grad))
    (logits, grad), (row_logits, row_grad) = results
    assert torch.allclose(logits, row_logits, atol=1e-5)
    assert grad[0].abs().sum() > 0 and grad[1].abs().sum() > 0
    assert torch.allclose(grad, row_grad, atol=1e-6, rtol=1e-4)


def test_unencodable_label_word_names_the_key():
    backbone = tiny_backbone("causal")
    with pytest.raises(PipelineError, match="tasks.x.label_words"):
        backbone.label_words([" positive", " zzzunknown"], "params.yaml: tasks.x.label_words")


def test_long_inputs_lose_their_start_not_the_answer_cue():
    backbone = tiny_backbone("causal")
    text = "good " * 50 + "sentiment :"
    ids = backbone.tokenize([text], max_length=8)["input_ids"][0].tolist()
    assert len(ids) == 8
    assert backbone.tokenizer.decode(ids[-2:]) == "sentiment :"


def test_a_fixed_prompt_keys_and_values_are_computed_once_per_evaluation_pass(monkeypatch):
    backbone, enc, prompt = setup("causal")
    labels = backbone.label_words([" positive", " negative"], "test")
    calls = []
    compute = backbone._prompt_keys_values
    monkeypatch.setattr(backbone, "_prompt_keys_values", lambda p: calls.append(1) or compute(p))
    rows = [slice(0, 1), slice(1, 3), slice(0, 3)]
    with torch.no_grad():  # the reference: no memo outside inference mode, one prefix per batch
        expected = [backbone(prompt(), enc["input_ids"][r], enc["attention_mask"][r], labels).logits for r in rows]
    assert len(calls) == 3
    with torch.inference_mode():
        got = [backbone(prompt(), enc["input_ids"][r], enc["attention_mask"][r], labels).logits for r in rows]
        assert len(calls) == 4  # once for the three batches
        other = prompt() + 1  # another prompt is not served the first one's keys and values
        backbone(other, enc["input_ids"], enc["attention_mask"], labels)
        assert len(calls) == 5
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(expected, got))


def test_gemma_prompts_start_in_the_scaled_input_space():
    """Gemma multiplies token embeddings by sqrt(d) inside its embedding module; a prompt sampled from the vocabulary
    must be those scaled vectors (what the input beside it is), not the raw rows, which are sqrt(d) times smaller."""
    backbone = tiny_backbone("gemma3")
    ids = backbone.sample_vocab_ids(4, torch.Generator().manual_seed(0))
    sampled = backbone.sample_vocab_embeddings(4, torch.Generator().manual_seed(0))
    rows = backbone.input_embeddings.weight.detach()[ids]
    assert torch.allclose(sampled, rows * 32**0.5, rtol=1e-5)
    assert torch.allclose(sampled, backbone.input_embeddings(ids), rtol=1e-6)
    llama = tiny_backbone("causal")  # no scaling: the same rows as before
    assert torch.equal(llama.sample_vocab_embeddings(4, torch.Generator().manual_seed(0)), llama.input_embeddings.weight[ids])


@pytest.mark.parametrize("words", [[" positive", " negative", " spam"], [" good movie", " bad"]])
def test_label_scores_follow_a_final_logit_softcap(words):
    """Gemma 2 caps its logits (cap·tanh(z / cap)); label scores must be the model's, capped the same way."""
    backbone, enc, prompt = setup("gemma3")
    labels = backbone.label_words(words, "test")
    with torch.no_grad():
        plain = backbone(prompt(), enc["input_ids"], enc["attention_mask"], labels).logits
        backbone.model.config.final_logit_softcapping = 0.05  # below the tiny model's logits, so the cap bites
        capped = backbone(prompt(), enc["input_ids"], enc["attention_mask"], labels).logits
        reference = full_vocab_logits(backbone, prompt().unsqueeze(0), enc["input_ids"], enc["attention_mask"])
    assert not torch.allclose(plain, capped, atol=1e-3)
    if labels.single_token:
        assert torch.allclose(capped, reference[:, labels.first_ids], atol=1e-5)
        assert capped.abs().max() <= 0.05
