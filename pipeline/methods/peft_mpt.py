"""PEFT's Multitask Prompt Tuning (``MultitaskPromptTuningConfig``) as our shared P and task factors, both ways.

PEFT (0.21, ``peft/tuners/multitask_prompt_tuning/model.py``) keeps three tensors: ``prompt_embeddings`` (l·s, d),
``prefix_task_cols`` (K, l·s, r) and ``prefix_task_rows`` (K, r, d), s being ``num_transformer_submodules``
(PEFT's default: 2 for seq2seq, 1 otherwise). Its forward for task id k is
``prompt_embeddings ∘ (prefix_task_cols[k] @ prefix_task_rows[k])``: our ``P ∘ (U_k V_k)`` with P, U, V as they are
(pipeline/methods/mpt.py). Its seq2seq forward prepends rows [0, l) to the encoder input and, with s = 2, rows
[l, 2l) to the decoder input; our backbone puts the prompt on the encoder only, so we export with s = 1 and import
rows [0, l) of an s = 2 adapter (its decoder half is dropped).

The adapter is read from its folder (``adapter_config.json``, ``adapter_model.safetensors``) or from the bare
source-training checkpoint that PEFT's ``prompt_tuning_init_state_dict_path`` names, safetensors only. Importing
PEFT is not needed for either and would cost the distill stage seconds at start-up, so its names are spelled out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from pipeline.errors import PipelineError
from pipeline.methods.prompt_tuning import (
    PEFT_KEY, SAFETENSORS_WEIGHTS_NAME, check_export_meta, read_adapter_weights, read_checked_config,
    read_safetensors, submodules,
)
from pipeline.model.backbone import Backbone

PEFT_TYPE = "MULTITASK_PROMPT_TUNING"
COLS_KEY = "prefix_task_cols"  # (K, l·s, r): our U
ROWS_KEY = "prefix_task_rows"  # (K, r, d): our V


@dataclass(frozen=True)
class SharedPrompt:
    """P (l, d) and the task factors U (K, l, r), V (K, r, d), task k named ``tasks[k]``, read from ``path``."""

    shared: torch.Tensor
    u: torch.Tensor
    v: torch.Tensor
    tasks: tuple[str, ...]
    path: Path

    @property
    def rank(self) -> int:
        return int(self.u.shape[-1])


def peft_tensors(shared: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> dict[str, torch.Tensor]:
    """Our P, U, V under PEFT's names (s = 1), as its ``save_pretrained`` writes them."""
    return {PEFT_KEY: shared, COLS_KEY: u, ROWS_KEY: v}


def load_peft_multitask(path: Path, backbone: Backbone, prompt_length: int) -> SharedPrompt:
    """P and the task factors of a PEFT MPT adapter folder, or of its ``.safetensors`` source checkpoint, checked
    against ``backbone`` and l (``model.prompt_length``). Task names come from our ``mpt_export.json`` where the
    adapter is one of our exports, else ``task_id_<k>`` (PEFT's ``task_ids``)."""
    path = Path(path)
    if path.is_dir():
        config = read_checked_config(path, PEFT_TYPE, backbone, prompt_length)
        tasks = check_export_meta(path, backbone).get("tasks", [])
        names = [str(t.get("task")) for t in tasks if isinstance(t, dict)]
        weights, where = read_adapter_weights(path), path / SAFETENSORS_WEIGHTS_NAME
        count = submodules(config, backbone)
        expected = {"num_tasks": config.get("num_tasks"), "num_ranks": config.get("num_ranks")}
    elif path.suffix == ".safetensors" and path.is_file():
        names, weights, where, count, expected = [], read_safetensors(path), path, None, {}
    elif path.exists():
        raise PipelineError(
            f"{path}: not an adapter folder or a .safetensors checkpoint; pickled checkpoints (.bin, .pt) are never "
            "loaded (unpickling runs code)"
        )
    else:
        raise PipelineError(f"{path}: no such adapter folder or checkpoint")
    shared, u, v = _checked(weights, where, backbone, prompt_length, count, expected)
    if len(names) != u.shape[0]:
        names = [f"task_id_{k}" for k in range(u.shape[0])]
    return SharedPrompt(shared, u, v, tuple(names), path)


def _checked(
    weights: dict[str, torch.Tensor], where: Path, backbone: Backbone, length: int, submodule_count: int | None,
    expected: dict[str, int | None],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """P (l, d), U (K, l, r), V (K, r, d) from PEFT's tensors: every shape checked, the decoder half dropped."""
    dim = backbone.hidden_size
    missing = [key for key in (PEFT_KEY, COLS_KEY, ROWS_KEY) if key not in weights]
    if missing:
        raise PipelineError(
            f"{where}: holds no {', '.join(missing)}; not a PEFT MultitaskPromptTuning adapter (it holds "
            f"{', '.join(sorted(weights)) or 'nothing'})"
        )
    prompt, cols, rows = (weights[key] for key in (PEFT_KEY, COLS_KEY, ROWS_KEY))
    if submodule_count is None:  # a bare checkpoint: s from its row count (2 only where PEFT would use it: seq2seq)
        allowed = (1, 2) if backbone.info.kind == "seq2seq" else (1,)
        submodule_count = next((s for s in allowed if prompt.dim() == 2 and prompt.shape[0] == length * s), 1)
    # K and r as prefix_task_cols gives them; every other size is fixed by l, s and d.
    tasks, rank = (cols.shape[0], cols.shape[2]) if cols.dim() == 3 else ("K", "r")
    shapes = {
        PEFT_KEY: (prompt, (length * submodule_count, dim)),
        COLS_KEY: (cols, (tasks, length * submodule_count, rank)),
        ROWS_KEY: (rows, (tasks, rank, dim)),
    }
    for key, (tensor, shape) in shapes.items():
        if tuple(tensor.shape) != shape or 0 in tensor.shape:
            raise PipelineError(
                f"{where}: {key} has shape {tuple(tensor.shape)} but model.prompt_length {length} and the "
                f"backbone's hidden size {dim} need {shape}"
            )
    for key, wanted in (("num_tasks", tasks), ("num_ranks", rank)):
        if key in expected and expected[key] != wanted:
            raise PipelineError(f"{where}: adapter_config.json has {key} {expected[key]!r}; the weights hold {wanted}")
    shared, u, v = prompt[:length].float(), cols[:, :length].float(), rows.float()
    if not all(torch.isfinite(t).all() for t in (shared, u, v)):
        raise PipelineError(f"{where}: holds NaN or infinite values")
    return shared.clone(), u.clone(), v.clone()
