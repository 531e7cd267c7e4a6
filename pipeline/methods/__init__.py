"""Target-adaptation methods: each builds a prompt module and its optimizer groups.

A method is one builder function in ``TARGET_METHODS``; a new method is one new module plus one entry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from pipeline.artifacts import load_tensors
from pipeline.backbone import Backbone
from pipeline.errors import PipelineError
from pipeline.methods.mpt import TargetPrompt
from pipeline.methods.prompt_tuning import SoftPrompt
from pipeline.schema import METHODS
from pipeline.settings import ModelSettings, StepSettings

DISTILL_FILE = Path("results/distill/shared.safetensors")


@dataclass
class MethodContext:
    """What a method builder may use."""

    backbone: Backbone
    model: ModelSettings
    steps: StepSettings
    seed: int
    distill_file: Path = DISTILL_FILE
    freeze_shared: bool = True  # adapt.freeze_shared: mpt keeps P frozen (the paper) or trains it too


Built = tuple[nn.Module, list[dict]]


def build_prompt_tuning(ctx: MethodContext) -> Built:
    """``pt``: a fresh prompt from sampled vocabulary embeddings, the baseline."""
    generator = torch.Generator().manual_seed(ctx.seed)
    module = SoftPrompt(ctx.backbone.sample_vocab_embeddings(ctx.model.prompt_length, generator))
    return module, [{"params": [module.weight], "lr": ctx.steps.lr}]


def build_mpt(ctx: MethodContext) -> Built:
    """``mpt``: P from distillation, frozen; only L = U V trained, initialised as the mean source factors.

    With ``freeze_shared`` off (an ablation), P is trained too, at the full-prompt learning rate ``lr``.
    """
    tensors, meta = load_tensors(
        ctx.distill_file, "distill", expect={"backbone": ctx.backbone.info.fingerprint}
    )
    shared = tensors["shared"]
    if shared.shape[0] != ctx.model.prompt_length:
        raise PipelineError(
            f"params.yaml: model.prompt_length is {ctx.model.prompt_length} but {ctx.distill_file} holds a P of "
            f"length {shared.shape[0]}; rerun `dvc repro distill`"
        )
    train_shared = not ctx.freeze_shared
    module = TargetPrompt(shared, tensors["u"].mean(dim=0), tensors["v"].mean(dim=0), train_shared=train_shared)
    groups = [{"params": [module.u, module.v], "lr": ctx.steps.factor_lr}]
    if train_shared:
        groups.append({"params": [module.shared], "lr": ctx.steps.lr})
    return module, groups


TARGET_METHODS: dict[str, Callable[[MethodContext], Built]] = {
    "pt": build_prompt_tuning,
    "mpt": build_mpt,
}


assert tuple(TARGET_METHODS) == METHODS, "pipeline.schema.METHODS must list the registered methods"


def build_method(name: str, ctx: MethodContext) -> Built:
    if name not in TARGET_METHODS:
        raise PipelineError(f"params.yaml: adapt.methods: unknown method {name!r} (known: {', '.join(TARGET_METHODS)})")
    module, groups = TARGET_METHODS[name](ctx)
    return module.to(ctx.backbone.device), groups
