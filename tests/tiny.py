"""Tiny random backbones and data for tests: built offline from configs, never downloaded."""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    Gemma3ForCausalLM, Gemma3TextConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast, T5Config,
    T5ForConditionalGeneration,
)

from pipeline.model.backbone import Backbone, BackboneInfo

WORDS = (
    "good great fine bad awful poor movie film plot actor review what who where when how why is the a of "
    "positive negative question person place spam normal free win call now hello friend meeting tomorrow "
    "sentiment answer topic sport business tech game market phone team stock"
).split()


def tiny_tokenizer(words: tuple[str, ...] | list[str] = WORDS) -> PreTrainedTokenizerFast:
    """A word-level tokenizer over ``words`` plus special tokens; anything else maps to [UNK]."""
    vocab = {"[PAD]": 0, "[UNK]": 1, "[EOS]": 2, ":": 3, ".": 4, "?": 5, "!": 6, ",": 7}
    for word in words:
        vocab.setdefault(word, len(vocab))
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace()])
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="[PAD]", unk_token="[UNK]", eos_token="[EOS]"
    )


# The tiny backbones by architecture: ``causal`` (Llama), ``gemma3`` (causal too) and ``seq2seq`` (T5).
BACKBONE_KIND = {"causal": "causal", "gemma3": "causal", "seq2seq": "seq2seq"}
# Tiny Gemma-3: what sets the real one apart at a size that runs in milliseconds. head_dim 16 is not hidden/heads
# (8), as 256 is not 640/4; one key/value head; a sliding window of 4 tokens, shorter than the test inputs, in two
# of three layers; embeddings scaled by sqrt(32) in the embedding module; tied output layer.
GEMMA3_LAYERS, GEMMA3_KV_HEADS, GEMMA3_HEAD_DIM = 3, 1, 16


def tiny_gemma3_config(vocab_size: int, **overrides: object) -> Gemma3TextConfig:
    settings = dict(
        vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=GEMMA3_LAYERS,
        num_attention_heads=4, num_key_value_heads=GEMMA3_KV_HEADS, head_dim=GEMMA3_HEAD_DIM,
        query_pre_attn_scalar=GEMMA3_HEAD_DIM, sliding_window=4,
        layer_types=["sliding_attention", "sliding_attention", "full_attention"], max_position_embeddings=256,
        pad_token_id=0, eos_token_id=2, bos_token_id=2, tie_word_embeddings=True,
    )  # fmt: skip
    return Gemma3TextConfig(**{**settings, **overrides})


def tiny_model(kind: str, vocab_size: int, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    if kind == "gemma3":
        return Gemma3ForCausalLM(tiny_gemma3_config(vocab_size))
    if kind == "causal":
        config = LlamaConfig(
            vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
            pad_token_id=0, eos_token_id=2, bos_token_id=2, tie_word_embeddings=True,
        )
        return LlamaForCausalLM(config)
    config = T5Config(
        vocab_size=vocab_size, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=4,
        pad_token_id=0, eos_token_id=2, decoder_start_token_id=0, dropout_rate=0.0,
    )
    return T5ForConditionalGeneration(config)


def tiny_backbone(kind: str = "causal", seed: int = 0) -> Backbone:
    tokenizer = tiny_tokenizer()
    model = tiny_model(kind, len(tokenizer), seed)
    info = BackboneInfo(
        name=f"tiny-{kind}", kind=BACKBONE_KIND[kind], hidden_size=32, vocab_size=len(tokenizer), fingerprint="tiny"
    )
    return Backbone(model, tokenizer, info)


def save_tiny_backbone(folder: Path, kind: str = "causal", seed: int = 0) -> Path:
    """Save a tiny random model + tokenizer in Hugging Face layout (a `local` backbone source)."""
    tokenizer = tiny_tokenizer()
    model = tiny_model(kind, len(tokenizer), seed)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def full_params(tasks: dict, sources: list[str], targets: list[str]) -> dict:
    """The repo's default params.yaml with these tasks: a complete, valid params dict for stage tests."""
    import yaml

    params = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text(encoding="utf-8"))
    params["tasks"], params["source_tasks"], params["target_tasks"] = tasks, sources, targets
    return params
