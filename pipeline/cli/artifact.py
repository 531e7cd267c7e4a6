"""A finished run's prompt with everything needed to use it outside the pipeline, checked against the backbone.

A run folder is ``results/adapt/<target>-<method>/seed<seed>/k<k>/`` (``params.safetensors``) or
``results/source/<task>/`` (``prompt.safetensors``); both hold a tensor ``prompt`` of shape (l, d) (for ``mpt``
it is P ∘ L). The artifact's header names the backbone fingerprint, the task and its label words; the template
and the raw label names come from the task's ``data/prepared/<task>/task.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pipeline.store.tensors import load_tensors
from pipeline.store.atomic import read_json
from pipeline.model.backbone import INFO_FILE, BackboneInfo
from pipeline.data.prepared import INFO_FILE as TASK_INFO_FILE
from pipeline.data.prepared import TaskInfo
from pipeline.layout import PREPARED_DIR
from pipeline.errors import PipelineError

# File in a run folder -> the stage that makes it (first match wins: an adapt run has no prompt.safetensors).
PROMPT_FILES = {"params.safetensors": "adapt", "prompt.safetensors": "source"}


@dataclass(frozen=True)
class PromptArtifact:
    """A run's prompt (l, d) and what it was trained for."""

    path: Path  # the safetensors file the prompt came from
    prompt: torch.Tensor  # (l, d)
    backbone: BackboneInfo  # the backbone folder's info; its fingerprint equals the artifact's
    task: TaskInfo
    method: str  # "pt" | "mpt" for adapt runs, "source" for a source teacher

    def export_meta(self) -> dict[str, Any]:
        """What ``mpt_export.json`` records, so a reader can check backbone, task and verbalizer."""
        return {
            **backbone_fields(self.backbone),
            "task": self.task.name,
            **task_fields(self.task),
            "method": self.method,
            "prompt_length": int(self.prompt.shape[0]),
            "hidden_size": int(self.prompt.shape[1]),
            "made_from": str(self.path),
        }


def backbone_fields(backbone: BackboneInfo) -> dict[str, Any]:
    """An export's record of the backbone it needs (``mpt_export.json``)."""
    return {"backbone": backbone.fingerprint, "backbone_name": backbone.name, "backbone_kind": backbone.kind}


def task_fields(task: TaskInfo) -> dict[str, Any]:
    """An export's record of how a task's texts become inputs and its labels scores (``mpt_export.json``)."""
    return {"labels": task.labels, "label_words": task.label_words, "template": task.template}


def read_backbone_info(folder: Path) -> BackboneInfo:
    """The ``backbone.json`` of a materialised backbone folder, without loading any weights."""
    path = Path(folder) / INFO_FILE
    try:
        return BackboneInfo(**read_json(path, "backbone"))
    except TypeError as exc:  # a missing or unknown field
        raise PipelineError(f"{path}: not a backbone info file ({exc}); rerun `dvc repro backbone`") from None


def read_task_info(name: str, prepared_dir: Path = PREPARED_DIR) -> TaskInfo:
    """A prepared task's ``task.json`` (labels, label words, template), without loading its dataset."""
    path = Path(prepared_dir) / name / TASK_INFO_FILE
    if not path.is_file():
        raise PipelineError(f"{path}: not found; it is made by `dvc repro data@{name}`")
    try:
        return TaskInfo.from_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError) as exc:
        raise PipelineError(f"{path}: unreadable task info ({exc}); rerun `dvc repro data@{name}`") from None


def find_prompt_file(run_dir: Path) -> tuple[Path, str]:
    """The prompt file of a run folder and the stage that made it."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise PipelineError(f"{run_dir}: no such run folder")
    for name, stage in PROMPT_FILES.items():
        if (run_dir / name).is_file():
            return run_dir / name, stage
    raise PipelineError(f"{run_dir}: holds neither {' nor '.join(PROMPT_FILES)}; not a source@ or adapt@ run folder")


def load_prompt_artifact(run_dir: Path, backbone_dir: Path, prepared_dir: Path = PREPARED_DIR) -> PromptArtifact:
    """Load a run's prompt; refuse one made with another backbone or a task whose verbalizer changed since."""
    path, stage = find_prompt_file(run_dir)
    backbone = read_backbone_info(backbone_dir)
    tensors, meta = load_tensors(path, stage)
    check_backbone(path, meta, backbone, backbone_dir)
    prompt = tensors.get("prompt")
    if prompt is None and stage == "adapt":  # attempt (per-example prompts), prefix, ptuning at [P] markers
        raise PipelineError(
            f"{path}: method {meta.get('method')!r} leaves no single (l, d) prompt to prepend (it holds "
            f"{', '.join(sorted(tensors))}); only prompt-tuning-shaped runs can be exported or used to predict"
        )
    if prompt is None or prompt.dim() != 2 or prompt.shape[1] != backbone.hidden_size:
        shape = None if prompt is None else tuple(prompt.shape)
        raise PipelineError(f"{path}: expected a tensor 'prompt' of shape (l, {backbone.hidden_size}), got {shape}")
    task = read_checked_task(str(meta.get("task")), meta.get("label_words"), path, prepared_dir)
    method = meta.get("method", stage) if stage == "adapt" else stage
    return PromptArtifact(path=path, prompt=prompt.float(), backbone=backbone, task=task, method=method)


def check_backbone(path: Path, meta: dict[str, Any], backbone: BackboneInfo, backbone_dir: Path) -> None:
    """Refuse an artifact (``path``, its metadata ``meta``) made with another backbone than ``backbone_dir``'s."""
    if meta.get("backbone") != backbone.fingerprint:
        raise PipelineError(
            f"{path}: made with backbone {meta.get('backbone')!r} but {Path(backbone_dir) / INFO_FILE} is "
            f"{backbone.fingerprint!r}; use the backbone it was trained on (--backbone DIR)"
        )


def read_checked_task(name: str, label_words: Any, path: Path, prepared_dir: Path = PREPARED_DIR) -> TaskInfo:
    """Task ``name``'s info, refused if its label words differ from the ``label_words`` that ``path`` was made with."""
    task = read_task_info(name, prepared_dir)
    if task.label_words != label_words:
        raise PipelineError(
            f"{Path(prepared_dir) / task.name / TASK_INFO_FILE}: label words {json.dumps(task.label_words)} differ "
            f"from the {json.dumps(label_words)} that {path} was trained with; rerun its stage"
        )
    return task
