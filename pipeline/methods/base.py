"""What every method builder gets (:class:`MethodContext`) and returns (:class:`Built`), and the inputs several
of them share.

Kept apart from the registry (``pipeline.methods``) so that a method module imports these without importing
every other method.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from contextlib import contextmanager
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple

import torch
from torch import nn

from pipeline.config.params import MethodSettings, ModelSettings, StepSettings
from pipeline.data.batching import TaskData
from pipeline.errors import PipelineError
from pipeline.layout import DISTILL_FILE, SOURCES_DIR
from pipeline.model.backbone import Backbone
from pipeline.store.tensors import load_tensors



@dataclass
class MethodContext:
    """What a method builder may use."""

    backbone: Backbone
    model: ModelSettings
    steps: StepSettings
    seed: int
    distill_file: Path = DISTILL_FILE
    # Needed by some methods only: the target (spot scores sources on its dev split, cpt draws its context, ptuning
    # reads its template), the source tasks in params order (spot, attempt) and the per-method knobs.
    task: TaskData | None = None
    sources: tuple[str, ...] = ()
    sources_dir: Path = SOURCES_DIR
    options: MethodSettings = field(default_factory=MethodSettings)
    freeze_shared: bool = True  # adapt.freeze_shared: mpt keeps P frozen (the paper) or trains it too


class Built(NamedTuple):
    """A built method. A builder may return a plain (module, groups) pair: a Built without extras."""

    module: nn.Module  # maps a Batch to a (l, d) / (B, l, d) prompt or a pipeline.model.backbone.Prompt
    groups: list[dict]  # optimizer groups: [{"params": [...], "lr": float}, ...]
    extras: Mapping[str, Any] = MappingProxyType({})  # written into the run's metrics.json (spot's choice)


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Make inits drawn from the global RNG (nn.Linear, PEFT's encoders) repeatable, leaving that RNG as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def vocab_init(ctx: MethodContext) -> torch.Tensor:
    """A fresh (l, d) prompt of sampled vocabulary embeddings (seeded): pt's start, and attempt's target prompt."""
    generator = torch.Generator().manual_seed(ctx.seed)
    return ctx.backbone.sample_vocab_embeddings(ctx.model.prompt_length, generator)


def target_task(ctx: MethodContext, method: str) -> TaskData:
    """The target task, which ``method`` reads; a caller that did not pass it is a programming error."""
    if ctx.task is None:
        raise PipelineError(f"{method}: needs the target task (MethodContext.task)")
    return ctx.task


def source_prompts(ctx: MethodContext, method: str) -> dict[str, torch.Tensor]:
    """Each source teacher's (l, d) prompt, in source order, checked against the backbone and the prompt length."""
    if not ctx.sources:
        raise PipelineError(f"{method}: needs the source tasks (params.yaml: source_tasks)")
    prompts = {}
    for name in ctx.sources:
        path = ctx.sources_dir / name / "prompt.safetensors"
        tensors, _ = load_tensors(path, f"source@{name}", expect={"backbone": ctx.backbone.info.fingerprint})
        prompt = tensors.get("prompt")
        shape = (ctx.model.prompt_length, ctx.backbone.hidden_size)
        if prompt is None or tuple(prompt.shape) != shape:
            found = None if prompt is None else tuple(prompt.shape)
            raise PipelineError(
                f"{path}: expected a prompt of shape {shape} (model.prompt_length x hidden size), got {found}; "
                f"rerun `dvc repro source@{name}`"
            )
        prompts[name] = prompt.float().to(ctx.backbone.device)
    return prompts
