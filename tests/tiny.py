"""Tiny random backbones and data for tests: built offline from configs, never downloaded."""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast, T5Config, T5ForConditionalGeneration

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


def tiny_model(kind: str, vocab_size: int, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
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
    info = BackboneInfo(name=f"tiny-{kind}", kind=kind, hidden_size=32, vocab_size=len(tokenizer), fingerprint="tiny")
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
