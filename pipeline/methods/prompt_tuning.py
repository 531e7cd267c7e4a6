"""Prompt tuning (Lester et al., 2021): one trainable l x d matrix prepended to the input embeddings; and its
prompt read from a PEFT prompt-tuning adapter (a source teacher trained elsewhere; the adapter layout:
pipeline/cli/export.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from pipeline.errors import PipelineError
from pipeline.methods.base import Built, MethodContext, target_task, vocab_init
from pipeline.model.backbone import Backbone, LabelWords

PEFT_KEY = "prompt_embeddings"  # the one tensor PEFT saves for prompt learning
EXPORT_META = "mpt_export.json"  # our metadata beside the adapter: backbone fingerprint, task, verbalizer
# PEFT's task types and file names (peft.TaskType, peft.utils.CONFIG_NAME, ...), spelled out: importing PEFT costs
# every stage seconds at start-up, and a source stage reads an adapter folder without needing PEFT itself.
TASK_TYPES = {"causal": "CAUSAL_LM", "seq2seq": "SEQ_2_SEQ_LM"}
CONFIG_NAME = "adapter_config.json"
SAFETENSORS_WEIGHTS_NAME = "adapter_model.safetensors"
WEIGHTS_NAME = "adapter_model.bin"


class SoftPrompt(nn.Module):
    """A soft prompt of shape (l, d), initialised from given rows (e.g. sampled vocabulary embeddings)."""

    def __init__(self, init: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(init.detach().clone())

    def forward(self, batch: object = None) -> torch.Tensor:
        """Return the (l, d) prompt, the same for every example; the batch is accepted for a uniform interface."""
        return self.weight

    def export(self) -> dict[str, torch.Tensor]:
        return {"prompt": self.weight.detach()}


def build(ctx: MethodContext) -> Built:
    """``pt``: a fresh prompt, the baseline: sampled vocabulary embeddings, or with ``adapt.pt_init: label_words``
    the target's label-word embeddings in its first rows (Lester et al. 2021's class-label init)."""
    init = vocab_init(ctx)
    if ctx.options.pt_init == "label_words":
        init = label_word_init(ctx.backbone, target_task(ctx, "pt").labels, init)
    module = SoftPrompt(init)
    return Built(module, [{"params": [module.weight], "lr": ctx.steps.lr}])


def label_word_init(backbone: Backbone, labels: LabelWords, fallback: torch.Tensor) -> torch.Tensor:
    """``fallback`` (l, d) with its first rows replaced by the embeddings of each label word's tokens, in label order
    (a label of several tokens: their mean); rows past the labels keep the fallback (Lester et al. 2021)."""
    rows = [backbone.embed(torch.tensor(ids)).mean(dim=0) for ids in labels.token_ids]
    init = fallback.clone()
    count = min(len(rows), init.shape[0])
    init[:count] = torch.stack(rows[:count]).to(init.device)
    return init


def load_peft_prompt(folder: Path, backbone: Backbone, prompt_length: int) -> torch.Tensor:
    """The (l, d) prompt of a PEFT prompt-tuning adapter folder, checked against ``backbone`` and l.

    Weights are read with safetensors only; a pickled ``adapter_model.bin`` is refused, never unpickled.
    """
    folder = Path(folder)
    config = read_checked_config(folder, "PROMPT_TUNING", backbone, prompt_length)
    check_export_meta(folder, backbone)
    weights = read_adapter_weights(folder)
    rows = weights.get(PEFT_KEY)
    shape = (prompt_length * submodules(config, backbone), backbone.hidden_size)
    if rows is None or tuple(rows.shape) != shape:
        found = None if rows is None else tuple(rows.shape)
        where = folder / SAFETENSORS_WEIGHTS_NAME
        raise PipelineError(f"{where}: expected {PEFT_KEY!r} of shape {shape}, got {found}")
    return rows[:prompt_length].float().clone()  # rows past l (a decoder half) are unused by prompt tuning


def read_checked_config(folder: Path, peft_type: str, backbone: Backbone, prompt_length: int) -> dict[str, Any]:
    """An adapter folder's config, refused unless it is a ``peft_type`` adapter for this backbone and l."""
    config = read_adapter_config(folder)
    needs = {  # adapter_config.json key -> (the value this pipeline needs, who needs it)
        "peft_type": (peft_type, f"a {peft_type} adapter"),
        "task_type": (TASK_TYPES[backbone.info.kind], f"a {backbone.info.kind} backbone"),
        "num_virtual_tokens": (prompt_length, "params.yaml model.prompt_length"),
        "token_dim": (backbone.hidden_size, "the backbone's hidden size"),
    }
    for key, (wanted, who) in needs.items():
        if config.get(key) != wanted:
            raise PipelineError(f"{folder}: {key} is {config.get(key)!r} but {who} needs {wanted!r}")
    return config


def submodules(config: dict[str, Any], backbone: Backbone) -> int:
    """``num_transformer_submodules`` (s: the adapter holds l·s prompt rows); PEFT's default when it is missing:
    2 for seq2seq, 1 otherwise."""
    return config.get("num_transformer_submodules") or (2 if backbone.info.kind == "seq2seq" else 1)


def read_adapter_config(folder: Path) -> dict[str, Any]:
    """A PEFT adapter folder's ``adapter_config.json`` as a mapping."""
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


def read_adapter_weights(folder: Path) -> dict[str, torch.Tensor]:
    """The tensors of ``folder/adapter_model.safetensors``; a pickled ``adapter_model.bin`` is refused, never read."""
    path = folder / SAFETENSORS_WEIGHTS_NAME
    if not path.is_file():
        if (folder / WEIGHTS_NAME).is_file():
            raise PipelineError(
                f"{folder / WEIGHTS_NAME}: pickled weights are never loaded (unpickling runs code); "
                f"save the adapter with safe_serialization=True to get {SAFETENSORS_WEIGHTS_NAME}"
            )
        raise PipelineError(f"{path}: not found")
    return read_safetensors(path)


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """A safetensors file's tensors; a corrupt or truncated file is a one-line error naming it."""
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise PipelineError(f"{path}: corrupt or truncated safetensors file ({exc})") from None


def check_export_meta(folder: Path, backbone: Backbone) -> dict[str, Any]:
    """Our own exports say which backbone they were made with (refused if another); a foreign adapter has no such
    file. Returns the export's metadata ({} for a foreign adapter)."""
    path = folder / EXPORT_META
    if not path.is_file():
        return {}
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        made_with = meta.get("backbone")
    except (OSError, ValueError, AttributeError) as exc:
        raise PipelineError(f"{path}: unreadable export metadata ({exc})") from None
    if made_with != backbone.info.fingerprint:
        raise PipelineError(
            f"{path}: exported from backbone {made_with!r} but this backbone is {backbone.info.fingerprint!r}"
        )
    return meta
