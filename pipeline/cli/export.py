"""Soft prompts as standard PEFT prompt-tuning adapters: export a run's prompt (importing a teacher's:
pipeline/methods/prompt_tuning.py, load_peft_prompt; the multitask format: pipeline/cli/export_mpt.py).

PEFT (0.21) keeps a prompt-tuning adapter in a folder: ``adapter_config.json`` (a ``PromptTuningConfig``) and
``adapter_model.safetensors`` holding one tensor ``prompt_embeddings`` of shape (l·s, d), s being
``num_transformer_submodules``. Its prompt-tuning forward prepends rows [0, l) to the input embeddings (the
encoder's, for T5) and extends the attention mask with l ones. That is our ``Backbone``: a causal LM sees
``[prompt; input]``, an encoder-decoder LM gets the prompt on the encoder only. PEFT defaults to s = 2 for
seq2seq models and saves 2l rows, but its prompt-tuning forward never reads rows [l, 2l); we export with s = 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from peft import PeftConfig, PromptTuningConfig
from safetensors.torch import save_file
from transformers import AutoConfig

from pipeline.store.atomic import atomic_dir, write_json
from pipeline.store.locks import artifacts_locked
from pipeline.layout import PREPARED_DIR
from pipeline.errors import PipelineError
from pipeline.cli.artifact import PromptArtifact, load_prompt_artifact
from pipeline.methods.prompt_tuning import EXPORT_META, PEFT_KEY, SAFETENSORS_WEIGHTS_NAME, TASK_TYPES


def export_run(
    run_dir: Path, out_dir: Path, backbone_dir: Path, prepared_dir: Path = PREPARED_DIR
) -> PromptArtifact:
    """Write a run's (l, d) prompt to ``out_dir`` as a PEFT prompt-tuning adapter, atomically."""
    check_out_dir(out_dir)
    with artifacts_locked(run_dir, backbone_dir, prepared_dir, exclusive=False):  # never mid-replace by a stage
        artifact = load_prompt_artifact(run_dir, backbone_dir, prepared_dir)
        length, dim = artifact.prompt.shape
        config = peft_config(PromptTuningConfig, artifact.backbone.kind, int(length), int(dim), backbone_dir)
    write_adapter(out_dir, config, {PEFT_KEY: artifact.prompt}, artifact.export_meta())
    return artifact


def check_out_dir(out_dir: Path) -> None:
    """The folder is replaced as a whole: never swap away a folder that is not an earlier export."""
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / EXPORT_META).is_file():
        raise PipelineError(f"{out_dir}: exists and is not an earlier export (no {EXPORT_META}); pick a new folder")


def write_adapter(out_dir: Path, config: PeftConfig, weights: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """An adapter folder as PEFT's ``save_pretrained`` leaves it, plus our ``mpt_export.json``, written atomically."""
    with atomic_dir(Path(out_dir)) as tmp:
        config.save_pretrained(str(tmp))
        tensors = {key: tensor.float().contiguous() for key, tensor in weights.items()}
        save_file(tensors, str(tmp / SAFETENSORS_WEIGHTS_NAME), metadata={"format": "pt"})  # as PEFT writes it
        write_json(tmp / EXPORT_META, meta)


def peft_config(
    config_class: type[PeftConfig], kind: str, length: int, dim: int, backbone_dir: Path, **extra: Any
) -> PeftConfig:
    """The config PEFT itself would record for an l x d prompt on this backbone (layers and heads from its config)."""
    model_config = AutoConfig.from_pretrained(backbone_dir, trust_remote_code=False)
    return config_class(
        task_type=TASK_TYPES[kind],
        num_virtual_tokens=length,
        token_dim=dim,
        num_transformer_submodules=1,  # encoder only, as in our Backbone (see the module docstring)
        # transformers' attribute maps give these names for T5 (num_layers, num_heads) too.
        num_layers=model_config.num_hidden_layers,
        num_attention_heads=model_config.num_attention_heads,
        base_model_name_or_path=str(Path(backbone_dir).resolve()),
        inference_mode=True,  # what PEFT's save_pretrained records
        **extra,
    )
