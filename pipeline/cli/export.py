"""Soft prompts as standard PEFT prompt-tuning adapters: export a run's prompt, import a teacher's.

PEFT (0.21) keeps a prompt-tuning adapter in a folder: ``adapter_config.json`` (a ``PromptTuningConfig``) and
``adapter_model.safetensors`` holding one tensor ``prompt_embeddings`` of shape (l·s, d), s being
``num_transformer_submodules``. Its prompt-tuning forward prepends rows [0, l) to the input embeddings (the
encoder's, for T5) and extends the attention mask with l ones. That is our ``Backbone``: a causal LM sees
``[prompt; input]``, an encoder-decoder LM gets the prompt on the encoder only. PEFT defaults to s = 2 for
seq2seq models and saves 2l rows, but its prompt-tuning forward never reads rows [l, 2l); we export with s = 1.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from peft import PromptTuningConfig, TaskType
from peft.utils import CONFIG_NAME, SAFETENSORS_WEIGHTS_NAME, WEIGHTS_NAME
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from transformers import AutoConfig

from pipeline.store.atomic import atomic_dir, write_json
from pipeline.model.backbone import Backbone
from pipeline.layout import PREPARED_DIR
from pipeline.errors import PipelineError
from pipeline.cli.artifact import PromptArtifact, load_prompt_artifact

PEFT_KEY = "prompt_embeddings"  # the one tensor PEFT saves for prompt learning
EXPORT_META = "mpt_export.json"  # our metadata beside the adapter: backbone fingerprint, task, verbalizer
TASK_TYPES = {"causal": TaskType.CAUSAL_LM, "seq2seq": TaskType.SEQ_2_SEQ_LM}


def export_run(
    run_dir: Path, out_dir: Path, backbone_dir: Path, prepared_dir: Path = PREPARED_DIR
) -> PromptArtifact:
    """Write a run's (l, d) prompt to ``out_dir`` as a PEFT prompt-tuning adapter, atomically."""
    out_dir = Path(out_dir)
    # The folder is replaced as a whole: never swap away a folder that is not an earlier export.
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / EXPORT_META).is_file():
        raise PipelineError(f"{out_dir}: exists and is not an earlier export (no {EXPORT_META}); pick a new folder")
    artifact = load_prompt_artifact(run_dir, backbone_dir, prepared_dir)
    config = prompt_tuning_config(artifact, backbone_dir)
    with atomic_dir(out_dir) as tmp:
        config.save_pretrained(str(tmp))
        weights = {PEFT_KEY: artifact.prompt.contiguous()}
        save_file(weights, str(tmp / SAFETENSORS_WEIGHTS_NAME), metadata={"format": "pt"})  # as PEFT writes it
        write_json(tmp / EXPORT_META, artifact.export_meta())
    return artifact


def prompt_tuning_config(artifact: PromptArtifact, backbone_dir: Path) -> PromptTuningConfig:
    """The config PEFT itself would record for this prompt on this backbone (layers and heads from its config)."""
    model_config = AutoConfig.from_pretrained(backbone_dir, trust_remote_code=False)
    length, dim = artifact.prompt.shape
    return PromptTuningConfig(
        task_type=TASK_TYPES[artifact.backbone.kind],
        num_virtual_tokens=int(length),
        token_dim=int(dim),
        num_transformer_submodules=1,  # encoder only, as in our Backbone (see the module docstring)
        # transformers' attribute maps give these names for T5 (num_layers, num_heads) too.
        num_layers=model_config.num_hidden_layers,
        num_attention_heads=model_config.num_attention_heads,
        base_model_name_or_path=str(Path(backbone_dir).resolve()),
        inference_mode=True,  # what PEFT's save_pretrained records
    )


def load_peft_prompt(folder: Path, backbone: Backbone, prompt_length: int) -> torch.Tensor:
    """The (l, d) prompt of a PEFT prompt-tuning adapter folder, checked against ``backbone`` and l.

    Weights are read with safetensors only; a pickled ``adapter_model.bin`` is refused, never unpickled.
    """
    folder = Path(folder)
    config = _adapter_config(folder)
    needs = {  # adapter_config.json key -> (the value this pipeline needs, who needs it)
        "peft_type": ("PROMPT_TUNING", "a prompt-tuning adapter"),
        "task_type": (TASK_TYPES[backbone.info.kind].value, f"a {backbone.info.kind} backbone"),
        "num_virtual_tokens": (prompt_length, "params.yaml model.prompt_length"),
        "token_dim": (backbone.hidden_size, "the backbone's hidden size"),
    }
    for key, (wanted, who) in needs.items():
        if config.get(key) != wanted:
            raise PipelineError(f"{folder}: {key} is {config.get(key)!r} but {who} needs {wanted!r}")
    _check_export_meta(folder, backbone)
    # PEFT's default for a missing value: 2 submodules for seq2seq, 1 otherwise.
    submodules = config.get("num_transformer_submodules") or (2 if backbone.info.kind == "seq2seq" else 1)
    weights = _adapter_weights(folder)
    rows = weights.get(PEFT_KEY)
    shape = (prompt_length * submodules, backbone.hidden_size)
    if rows is None or tuple(rows.shape) != shape:
        found = None if rows is None else tuple(rows.shape)
        where = folder / SAFETENSORS_WEIGHTS_NAME
        raise PipelineError(f"{where}: expected {PEFT_KEY!r} of shape {shape}, got {found}")
    return rows[:prompt_length].float().clone()  # rows past l (a decoder half) are unused by prompt tuning


def _adapter_config(folder: Path) -> dict[str, Any]:
    path = folder / CONFIG_NAME
    if not folder.is_dir():
        raise PipelineError(f"{folder}: no such adapter folder")
    if not path.is_file():
        raise PipelineError(f"{path}: not found; not a PEFT adapter folder")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PipelineError(f"{path}: unreadable adapter config ({exc})") from None
    if not isinstance(config, dict):
        raise PipelineError(f"{path}: expected a JSON object")
    return config


def _adapter_weights(folder: Path) -> dict[str, torch.Tensor]:
    path = folder / SAFETENSORS_WEIGHTS_NAME
    if not path.is_file():
        if (folder / WEIGHTS_NAME).is_file():
            raise PipelineError(
                f"{folder / WEIGHTS_NAME}: pickled weights are never loaded (unpickling runs code); "
                f"save the adapter with safe_serialization=True to get {SAFETENSORS_WEIGHTS_NAME}"
            )
        raise PipelineError(f"{path}: not found")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise PipelineError(f"{path}: corrupt or truncated safetensors file ({exc})") from None


def _check_export_meta(folder: Path, backbone: Backbone) -> None:
    """Our own exports say which backbone they were made with; a foreign adapter has no such file."""
    path = folder / EXPORT_META
    if not path.is_file():
        return
    try:
        made_with = json.loads(path.read_text(encoding="utf-8")).get("backbone")
    except (OSError, ValueError, AttributeError) as exc:
        raise PipelineError(f"{path}: unreadable export metadata ({exc})") from None
    if made_with != backbone.info.fingerprint:
        raise PipelineError(
            f"{path}: exported from backbone {made_with!r} but this backbone is {backbone.info.fingerprint!r}"
        )
