"""Our shared P and task factors as a PEFT ``MultitaskPromptTuning`` adapter: ``results/distill`` with every source
task's factors, or a target ``mpt`` / ``mpt_full`` run with its one factor L (the tensor names and PEFT's forward:
pipeline/methods/peft_mpt.py; importing one: params ``distill_from``).

PEFT's task id k selects factor k; ``mpt_export.json`` records which task that is (``tasks``, in task id order) and,
for the tasks this pipeline prepared, their template, labels and label words. A seq2seq adapter is written with
``num_transformer_submodules: 1``, the prompt on the encoder only, as our backbone scores it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from peft import MultitaskPromptTuningConfig

from pipeline.cli.artifact import (
    backbone_fields, check_backbone, find_prompt_file, read_backbone_info, read_checked_task, task_fields,
)
from pipeline.cli.export import check_out_dir, peft_config, write_adapter
from pipeline.data.prepared import TaskInfo
from pipeline.errors import PipelineError
from pipeline.layout import DISTILL_FILE, PREPARED_DIR
from pipeline.methods.peft_mpt import peft_tensors
from pipeline.model.backbone import BackboneInfo
from pipeline.store.locks import artifacts_locked
from pipeline.store.tensors import load_tensors


@dataclass(frozen=True)
class MultitaskArtifact:
    """P (l, d) and the factors U (K, l, r), V (K, r, d) of a distill output or a target run."""

    path: Path  # the safetensors file they came from
    shared: torch.Tensor
    u: torch.Tensor
    v: torch.Tensor
    backbone: BackboneInfo
    tasks: tuple[str, ...]  # the task of each factor: PEFT's task id k is tasks[k]
    known: dict[str, TaskInfo]  # the tasks among them that this pipeline prepared (their template and verbalizer)
    method: str  # "distill", or the target run's method

    def summary(self) -> str:
        length, dim = self.shared.shape
        return f"{self.method}: tasks {', '.join(self.tasks)}; P {length} x {dim}, rank {self.u.shape[-1]}"

    def export_meta(self) -> dict[str, Any]:
        """What ``mpt_export.json`` records: the backbone, and per task id its task and verbalizer."""
        tasks = [
            {"task_id": k, "task": name, **(task_fields(self.known[name]) if name in self.known else {})}
            for k, name in enumerate(self.tasks)
        ]
        return {
            **backbone_fields(self.backbone),
            "method": self.method,
            "prompt_length": int(self.shared.shape[0]),
            "hidden_size": int(self.shared.shape[1]),
            "rank": int(self.u.shape[-1]),
            "tasks": tasks,
            "made_from": str(self.path),
        }


def is_distill_folder(folder: Path) -> bool:
    """Whether ``folder`` is a ``distill`` output (it holds ``shared.safetensors``)."""
    return (Path(folder) / DISTILL_FILE.name).is_file()


def load_multitask_artifact(
    run_dir: Path, backbone_dir: Path, prepared_dir: Path = PREPARED_DIR
) -> MultitaskArtifact:
    """P and the factors of ``results/distill`` or of a target mpt run, checked against the backbone and the tasks'
    verbalizers; refuse a run without them (pt, a source teacher, attempt, ...)."""
    backbone = read_backbone_info(backbone_dir)
    if is_distill_folder(run_dir):
        path, stage = Path(run_dir) / DISTILL_FILE.name, "distill"
    else:
        path, stage = find_prompt_file(run_dir)
    tensors, meta = load_tensors(path, stage)
    check_backbone(path, meta, backbone, backbone_dir)
    if not {"shared", "u", "v"} <= set(tensors):
        raise PipelineError(
            f"{path}: holds no shared prompt P and factors U, V (method {meta.get('method', stage)!r}); only "
            "results/distill and target mpt or mpt_full runs export as a PEFT MultitaskPromptTuning adapter"
        )
    shared, u, v = (tensors[key].float() for key in ("shared", "u", "v"))
    if stage == "distill":
        # Older distill outputs name no factor_tasks: their factors are the source tasks, in order.
        tasks = meta.get("factor_tasks") or meta.get("source_tasks")
        verbalizers, method = meta.get("label_words"), stage
    else:  # a target run: one task, its L
        tasks, verbalizers = [meta.get("task")], {meta.get("task"): meta.get("label_words")}
        u, v, method = u.unsqueeze(0), v.unsqueeze(0), str(meta.get("method"))
    _check_shapes(path, shared, u, v, tasks)
    known = {
        name: read_checked_task(name, words, path, prepared_dir)
        for name, words in (verbalizers or {}).items() if name in tasks
    }
    return MultitaskArtifact(path, shared, u, v, backbone, tuple(tasks), known, method)


def export_multitask(
    run_dir: Path, out_dir: Path, backbone_dir: Path, prepared_dir: Path = PREPARED_DIR
) -> MultitaskArtifact:
    """Write P and the factors of ``run_dir`` to ``out_dir`` as a PEFT MultitaskPromptTuning adapter, atomically."""
    check_out_dir(out_dir)
    with artifacts_locked(run_dir, backbone_dir, prepared_dir, exclusive=False):  # never mid-replace by a stage
        artifact = load_multitask_artifact(run_dir, backbone_dir, prepared_dir)
        (length, dim), (tasks, _, rank) = artifact.shared.shape, artifact.u.shape
        config = peft_config(
            MultitaskPromptTuningConfig, artifact.backbone.kind, int(length), int(dim), backbone_dir,
            num_tasks=int(tasks), num_ranks=int(rank),
        )
    write_adapter(out_dir, config, peft_tensors(artifact.shared, artifact.u, artifact.v), artifact.export_meta())
    return artifact


def _check_shapes(path: Path, shared: torch.Tensor, u: torch.Tensor, v: torch.Tensor, tasks: Any) -> None:
    """P (l, d), U (K, l, r), V (K, r, d) and one task name per factor, or a one-line error naming the file."""
    consistent = (
        shared.dim() == 2 and u.dim() == 3 and v.dim() == 3 and isinstance(tasks, list)
        and u.shape[:2] == (len(tasks), shared.shape[0]) and v.shape == (len(tasks), u.shape[2], shared.shape[1])
    )
    if not consistent:
        raise PipelineError(
            f"{path}: P {tuple(shared.shape)}, U {tuple(u.shape)}, V {tuple(v.shape)} and tasks {tasks!r} do not fit "
            "(expected (l, d), (K, l, r), (K, r, d) and K task names); rerun its stage"
        )
