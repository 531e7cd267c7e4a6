"""A GGUF dequantised without instantiating the model (issue 15: the backbone stage's peak memory) writes the
files that loading it with ``from_pretrained(gguf_file=...)`` and saving the model wrote: same bytes, so the same
tensors and config, and DVC sees no change downstream.

On the tiny Llama (SmolLM2's architecture) and Gemma-3 GGUFs of tests/tiny_gguf.py, stored as fp32 and as Q8_0
blocks; row-sliced dequantisation is checked on its own against gguf's whole-tensor one for every block type.
"""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from pipeline.model import gguf_dequantise
from pipeline.model.gguf_dequantise import dequantise_in_row_slices, row_sliced_gguf_dequantise
from pipeline.model.gguf_weights import save_gguf_weights
from tiny_gguf import (
    gemma_vocabulary, tiny_gemma3_model, tiny_llama_model, write_tiny_gemma3_gguf, write_tiny_llama_gguf,
)  # fmt: skip

WRITERS = {"llama": (tiny_llama_model, write_tiny_llama_gguf), "gemma3": (tiny_gemma3_model, write_tiny_gemma3_gguf)}
SAVED_FILES = ("config.json", "generation_config.json", "model.safetensors")


def tiny_gguf(folder: Path, arch: str, quantise: bool) -> Path:
    tokens = gemma_vocabulary()
    build, write = WRITERS[arch]
    folder.mkdir(parents=True, exist_ok=True)
    return write(folder / f"tiny-{arch}.gguf", build(len(tokens)), tokens, quantise=quantise)


def save_through_the_model(gguf_path: Path, out_dir: Path) -> torch.nn.Module:
    """What the backbone stage did before: load the GGUF into a model, drop the quantizer, save the model."""
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
    model.hf_quantizer = None
    del model.config.quantization_config
    model.save_pretrained(out_dir)
    return model


@pytest.mark.parametrize("quantise", [False, True], ids=["fp32", "q8_0"])
@pytest.mark.parametrize("arch", sorted(WRITERS))
def test_weights_are_saved_as_the_loaded_model_saves_them(tmp_path, monkeypatch, arch, quantise):
    # Slices of one row: the tiny tensors are dequantised in many slices, as the real embedding is.
    monkeypatch.setattr(gguf_dequantise, "SLICE_VALUES", 1)
    gguf_path = tiny_gguf(tmp_path, arch, quantise)
    model = save_through_the_model(gguf_path, tmp_path / "through-model")
    hidden_size, vocab_size = save_gguf_weights(gguf_path, "causal", tmp_path / "direct")
    for name in SAVED_FILES:
        assert (tmp_path / "direct" / name).read_bytes() == (tmp_path / "through-model" / name).read_bytes(), name
    assert sorted(path.name for path in (tmp_path / "direct").iterdir()) == sorted(SAVED_FILES)
    assert (vocab_size, hidden_size) == tuple(model.get_input_embeddings().weight.shape)
    # The same tensors as the model loaded from the GGUF holds, bit for bit (the tied output layer is not stored).
    saved = load_file(tmp_path / "direct" / "model.safetensors")
    expected = {name: tensor for name, tensor in model.state_dict().items() if name != "lm_head.weight"}
    assert saved.keys() == expected.keys()
    for name, tensor in expected.items():
        assert saved[name].dtype == torch.float32 and torch.equal(saved[name], tensor), name
    # The fixture is a faithful GGUF of the model written (Gemma's norms lose a few bits to the stored 1 + w), and
    # Q8_0 values really went through dequantisation.
    written = WRITERS[arch][0](vocab_size).state_dict()
    embedding = "model.embed_tokens.weight"
    if quantise:
        assert torch.allclose(saved[embedding], written[embedding], atol=0.01)
        assert not torch.equal(saved[embedding], written[embedding])
    else:
        assert all(torch.allclose(saved[name], written[name], atol=1e-6) for name in saved)


# Every block type of the real wheels (SmolLM2: Q4_1, Q8_0; Gemma-3-270M: Q4_K, Q5_0, Q6_K, Q8_0), with BF16.
BLOCK_NAMES = ("BF16", "Q4_1", "Q5_0", "Q8_0", "Q4_K", "Q6_K")
BLOCK_TYPES = [getattr(gguf.GGMLQuantizationType, name) for name in BLOCK_NAMES]


@pytest.mark.parametrize("qtype", BLOCK_TYPES, ids=lambda qtype: qtype.name)
def test_row_slices_dequantise_to_the_whole_tensor_bit_for_bit(monkeypatch, qtype):
    block_values, block_bytes = gguf.GGML_QUANT_SIZES[qtype]
    rows, row_values = 7, 2 * max(block_values, 256)
    # Random bytes, as blocks (K-quants have no numpy quantiser): scales may decode to inf or NaN, so the results
    # are compared as bits.
    raw = np.random.default_rng(0).integers(0, 256, (rows, row_values // block_values * block_bytes), dtype=np.uint8)
    monkeypatch.setattr(gguf_dequantise, "SLICE_VALUES", 3 * row_values)  # slices of 3 rows, the last one of 1
    with np.errstate(all="ignore"):
        whole = gguf.dequantize(raw, qtype)
        sliced = dequantise_in_row_slices(raw, qtype)
    assert sliced.shape == whole.shape == (rows, row_values) and sliced.dtype == whole.dtype == np.float32
    assert np.array_equal(sliced.view(np.uint32), whole.view(np.uint32))


def test_sliced_dequantisation_is_undone_after_the_block_even_on_an_error():
    whole = gguf.dequantize
    with pytest.raises(RuntimeError, match="inside"):
        with row_sliced_gguf_dequantise():
            assert gguf.dequantize is not whole
            raise RuntimeError("inside")
    assert gguf.dequantize is whole
