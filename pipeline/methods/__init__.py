"""Target-adaptation methods: each builds a prompt module, its optimizer groups and extras for the metrics.

A method is one builder function in ``TARGET_METHODS``; a new method is one new module plus one entry.
Every prompt module maps a batch to what ``Backbone`` reads: a (l, d) or (B, l, d) prompt or a ``Prompt``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from pipeline.artifacts import load_tensors
from pipeline.backbone import Backbone
from pipeline.errors import PipelineError
from pipeline.batching import TaskData
from pipeline.methods import attempt, spot
from pipeline.methods.common import SOURCES_DIR, Built, vocab_init
from pipeline.methods.mpt import TargetPrompt
from pipeline.methods.prompt_tuning import SoftPrompt
from pipeline.schema import METHODS
from pipeline.settings import MethodSettings, ModelSettings, StepSettings

DISTILL_FILE = Path("results/distill/shared.safetensors")


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


def build_prompt_tuning(ctx: MethodContext) -> Built:
    """``pt``: a fresh prompt from sampled vocabulary embeddings, the baseline."""
    module = SoftPrompt(vocab_init(ctx))
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


def build_mpt_full(ctx: MethodContext) -> Built:
    """``mpt_full``, the paper's target adaptation: P and L = U V both trained from distill's P and mean factors.

    P is a full prompt (learning rate ``lr``), U and V factors (``factor_lr``): l·d + l·r + r·d parameters.
    """
    loaded, _ = build_mpt(ctx)  # P and the mean source factors, checked against the backbone and prompt length
    module = TargetPrompt(loaded.shared, loaded.u, loaded.v, train_shared=True)
    groups = [
        {"params": [module.shared], "lr": ctx.steps.lr},
        {"params": [module.u, module.v], "lr": ctx.steps.factor_lr},
    ]
    return Built(module, groups)


def _on_first_use(module: str) -> Callable[[MethodContext], Built]:
    """The ``build`` of ``pipeline.methods.<module>``, imported when first called: the PEFT-backed methods import
    PEFT, whose import alone took ~5-10 s of every stage's start-up (the default run uses pt and mpt only)."""

    def build(ctx: MethodContext) -> Built:
        return importlib.import_module(f"pipeline.methods.{module}").build(ctx)

    return build


TARGET_METHODS: dict[str, Callable[[MethodContext], Built | tuple[nn.Module, list[dict]]]] = {
    "pt": build_prompt_tuning,
    "mpt": build_mpt,
    "mpt_full": build_mpt_full,
    "spot": spot.build,
    "attempt": attempt.build,
    "prefix": _on_first_use("prefix"),
    "ptuning": _on_first_use("ptuning"),
    "cpt": _on_first_use("cpt"),
}


assert tuple(TARGET_METHODS) == METHODS, "pipeline.schema.METHODS must list the registered methods"


def build(name: str, ctx: MethodContext) -> Built:
    """Build method ``name``: its module on the backbone's device, its optimizer groups and its metrics extras."""
    if name not in TARGET_METHODS:
        raise PipelineError(f"params.yaml: adapt.methods: unknown method {name!r} (known: {', '.join(TARGET_METHODS)})")
    module, groups, extras = Built(*TARGET_METHODS[name](ctx))
    return Built(module.to(ctx.backbone.device), groups, extras)


def build_method(name: str, ctx: MethodContext) -> tuple[nn.Module, list[dict]]:
    """:func:`build` without the extras, for callers that need none (source teachers, tests)."""
    module, groups, _ = build(name, ctx)
    return module, groups
