"""Write a GGUF's weights as an fp32 Hugging Face checkpoint (config, generation config, safetensors) without
instantiating the model.

``from_pretrained(gguf_file=...)`` holds the dequantised state dict and the model it is copied into at once (and
gguf's temporaries on top). Here the model is built on the meta device, only for its parameter names (which
transformers' GGUF loader maps the file's tensors to) and its ``save_pretrained``; the one real copy of the
weights is the dequantised state dict, saved straight from it. The files are the ones ``from_pretrained`` then
``save_pretrained`` write, byte for byte (tested on tiny Llama and Gemma-3 GGUFs).
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM
from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

from pipeline.model.gguf_dequantise import row_sliced_gguf_dequantise


def save_gguf_weights(gguf_path: Path, kind: str, out_dir: Path) -> tuple[int, int]:
    """Save ``gguf_path`` dequantised to fp32 into ``out_dir``; return the input embedding's (hidden, vocab) size."""
    # trust_remote_code stays off: only architectures that transformers ships are built.
    config = AutoConfig.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, trust_remote_code=False)
    auto = AutoModelForCausalLM if kind == "causal" else AutoModelForSeq2SeqLM
    with torch.device("meta"):  # names and shapes only: no memory for weights
        skeleton = auto.from_config(config, dtype=torch.float32)
    with row_sliced_gguf_dequantise():
        checkpoint = load_gguf_checkpoint(
            str(gguf_path), return_tensors=True, model_to_load=skeleton, torch_dtype=torch.float32
        )
    tensors = checkpoint.pop("tensors")
    skeleton.save_pretrained(out_dir, state_dict=tensors)
    vocab_size, hidden_size = skeleton.get_input_embeddings().weight.shape
    return int(hidden_size), int(vocab_size)
