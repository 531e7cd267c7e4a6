"""Finished runs on disk as the stages leave them, on a tiny random backbone: for export, import and predict tests."""

from __future__ import annotations

from pathlib import Path

import torch

from pipeline.store.tensors import save_tensors
from pipeline.store.atomic import write_json
from pipeline.model.backbone import INFO_FILE, Backbone, BackboneInfo, load_backbone
from pipeline.data.batching import TaskData
from pipeline.data.prepared import INFO_FILE as TASK_INFO_FILE
from pipeline.data.prepared import TaskInfo
from pipeline.flows.runs import artifact_meta, task_meta
from pipeline.config.params import ModelSettings
from tiny import save_tiny_backbone, tiny_tokenizer

LENGTH = 4  # prompt length l of every test run
TASK = TaskInfo(
    name="toy", labels=["pos", "neg"], label_words=[" positive", " negative"], template="Review: {text} sentiment :",
    sizes={}, label_counts={}, source_sha256="toy",
)


def save_backbone_folder(folder: Path, kind: str = "causal") -> Backbone:
    """A tiny backbone folder (weights, tokenizer, backbone.json) as the backbone stage writes it, loaded back."""
    save_tiny_backbone(folder, kind)
    info = BackboneInfo(
        name=f"tiny-{kind}", kind=kind, hidden_size=32, vocab_size=len(tiny_tokenizer()), fingerprint=f"tiny-{kind}-fp"
    )
    write_json(Path(folder) / INFO_FILE, info.to_dict())
    return load_backbone(folder)


def save_task_info(prepared_dir: Path, task: TaskInfo = TASK) -> None:
    """Only the task.json of ``data/prepared/<task>/``: what export and predict read."""
    path = Path(prepared_dir) / task.name / TASK_INFO_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(task.to_json(), encoding="utf-8")


def random_prompt(seed: int = 0) -> torch.Tensor:
    """An (l, d) prompt on the scale of trained ones (the tiny model's embeddings have std ≈ 0.02)."""
    return 0.5 * torch.randn(LENGTH, 32, generator=torch.Generator().manual_seed(seed))


def save_repo(root: Path) -> Backbone:
    """The repo layout the CLI expects under ``root``: models/backbone, data/prepared/toy, results/adapt/toy-pt."""
    backbone = save_backbone_folder(Path(root) / "models" / "backbone")
    save_task_info(Path(root) / "data" / "prepared")
    save_run(Path(root) / "results" / "adapt" / "toy-pt", backbone, random_prompt(), method="pt")
    return backbone


def save_run(run_dir: Path, backbone: Backbone, prompt: torch.Tensor, method: str | None = "mpt") -> Path:
    """An adapt@ run (``params.safetensors``) for a ``method``, or a source@ teacher (``prompt.safetensors``)."""
    model = ModelSettings(prompt_length=prompt.shape[0], max_length=32, batch_size=8, eval_batch_size=8)
    task = TaskData(info=TASK, labels=backbone.label_words(TASK.label_words, "test"))
    extra = {"method": method} if method else {}
    path = Path(run_dir) / ("params.safetensors" if method else "prompt.safetensors")
    save_tensors(path, {"prompt": prompt}, artifact_meta(backbone, model, **extra, **task_meta(task)))
    return path
