"""backbone.dtype: auto resolves by hardware; forced float32 and bfloat16 both run, with fp32 prompts and scores."""

from pathlib import Path

import pytest
import torch

import pipeline.model.precision as precision
from pipeline.model.backbone import load_backbone
from pipeline.errors import PipelineError
from pipeline.training.losses import task_loss
from pipeline.methods.prompt_tuning import SoftPrompt
from pipeline.model.precision import dtype_name, dtype_setting, resolve_dtype
from pipeline.config.schema import check_backbone_spec
from tiny_runs import save_backbone_folder

TEXTS = ["good movie : sentiment", "what is the plot of the film ? answer", "bad : sentiment"]


@pytest.mark.parametrize("native, expected", [(True, torch.bfloat16), (False, torch.float32)])
def test_auto_picks_bf16_only_where_the_cpu_multiplies_it_natively(monkeypatch, native, expected):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)
    assert resolve_dtype("auto", "cpu") == expected
    assert resolve_dtype("float32", "cpu") == torch.float32  # forcing ignores the hardware
    assert resolve_dtype("bfloat16", "cpu") == torch.bfloat16


def test_a_bad_dtype_names_the_key():
    with pytest.raises(PipelineError, match="backbone.dtype"):
        dtype_setting({"backbone": {"dtype": "fp16"}})
    spec = {"name": "x", "kind": "causal", "source": {"kind": "local", "path": "m", "format": "hf"}, "dtype": "half"}
    with pytest.raises(PipelineError, match="backbone.dtype"):
        check_backbone_spec(spec)
    assert dtype_setting({"backbone": {}}) == "auto"  # left out: auto


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny") / "backbone"
    save_backbone_folder(folder)
    return folder


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_weights_take_the_dtype_while_prompt_gradients_and_scores_stay_fp32(folder, dtype):
    backbone = load_backbone(folder, dtype=dtype)
    assert backbone.dtype == dtype and {p.dtype for p in backbone.model.parameters()} == {dtype}
    assert dtype_name(backbone.dtype) == str(dtype).removeprefix("torch.")
    prompt = SoftPrompt(backbone.sample_vocab_embeddings(4, torch.Generator().manual_seed(0)))
    assert prompt.weight.dtype == torch.float32
    encoded = backbone.tokenize(TEXTS, max_length=32)
    labels = backbone.label_words([" positive", " negative"], "test")
    scores = backbone(prompt(), encoded["input_ids"], encoded["attention_mask"], labels)
    assert scores.logits.dtype == torch.float32 and scores.hidden.dtype == torch.float32
    task_loss(scores.logits, torch.tensor([0, 1, 0])).backward()
    assert prompt.weight.grad.dtype == torch.float32 and torch.isfinite(prompt.weight.grad).all()
    assert all(p.grad is None for p in backbone.model.parameters())


def test_bf16_scores_stay_close_to_fp32(folder):
    scores = {}
    for dtype in (torch.float32, torch.bfloat16):
        backbone = load_backbone(folder, dtype=dtype)
        prompt = backbone.sample_vocab_embeddings(4, torch.Generator().manual_seed(0))
        encoded = backbone.tokenize(TEXTS, max_length=32)
        labels = backbone.label_words([" positive", " negative", " spam"], "test")
        with torch.inference_mode():
            scores[dtype] = backbone(prompt, encoded["input_ids"], encoded["attention_mask"], labels).logits
    assert torch.allclose(scores[torch.float32], scores[torch.bfloat16], atol=0.1, rtol=0.05)


@pytest.mark.parametrize("dtype, expected", [(torch.float32, "sdpa"), (torch.bfloat16, "eager")])
def test_bf16_on_a_cpu_attends_eagerly_and_fp32_keeps_sdpa(folder, dtype, expected):
    # SDPA's bf16 backward on a CPU costs 2.4x its fp32 one (benchmarks/p8_profile.py); fp32 must keep its bytes.
    assert load_backbone(folder, dtype=dtype).model.config._attn_implementation == expected


def test_eager_and_sdpa_attention_give_the_same_bf16_scores(folder):
    backbone = load_backbone(folder, dtype=torch.bfloat16)
    prompt = backbone.sample_vocab_embeddings(4, torch.Generator().manual_seed(0))
    encoded = backbone.tokenize(TEXTS, max_length=32)
    labels = backbone.label_words([" positive", " negative", " spam"], "test")
    scores = {}
    for implementation in ("eager", "sdpa"):
        backbone.model.config._attn_implementation = implementation
        with torch.inference_mode():
            scores[implementation] = backbone(prompt, encoded["input_ids"], encoded["attention_mask"], labels).logits
    assert torch.allclose(scores["eager"], scores["sdpa"], atol=0.05, rtol=0.02)
