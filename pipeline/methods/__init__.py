"""Target-adaptation methods: each builds a prompt module, its optimizer groups and extras for the metrics.

A method is one module here holding its prompt module and its ``build(ctx)``; the registry is the dict below, so a
new method is one new module plus one entry (and its name in pipeline/config/schema.py METHODS, which config
checks without importing torch). Every prompt module maps a batch to what ``Backbone`` reads: a (l, d) or
(B, l, d) prompt or a ``Prompt``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from torch import nn

from pipeline.config.schema import METHODS
from pipeline.errors import PipelineError
from pipeline.methods import attempt, mpt, prompt_tuning, spot
from pipeline.methods.base import Built, MethodContext

__all__ = ["METHODS", "TARGET_METHODS", "Built", "MethodContext", "build", "build_method"]



def _on_first_use(module: str) -> Callable[[MethodContext], Built]:
    """The ``build`` of ``pipeline.methods.<module>``, imported when first called: the PEFT-backed methods import
    PEFT, whose import alone took ~5-10 s of every stage's start-up (the default run uses pt and mpt only)."""

    def build(ctx: MethodContext) -> Built:
        return importlib.import_module(f"pipeline.methods.{module}").build(ctx)

    return build


TARGET_METHODS: dict[str, Callable[[MethodContext], Built]] = {
    "pt": prompt_tuning.build,
    "mpt": mpt.build,
    "mpt_full": mpt.build_full,
    "spot": spot.build,
    "attempt": attempt.build,
    "prefix": _on_first_use("prefix"),
    "ptuning": _on_first_use("ptuning"),
    "cpt": _on_first_use("cpt"),
}


assert tuple(TARGET_METHODS) == METHODS, "pipeline.config.schema.METHODS must list the registered methods"


def build(name: str, ctx: MethodContext) -> Built:
    """Build method ``name``: its module on the backbone's device, its optimizer groups and its metrics extras."""
    if name not in TARGET_METHODS:
        known = ", ".join(TARGET_METHODS)
        raise PipelineError(f"params.yaml: adapt.methods: unknown method {name!r} (known: {known})")
    module, groups, extras = TARGET_METHODS[name](ctx)
    # The report shows a method's extras by this prefix; any other name would be dropped from it.
    assert all(key.startswith(f"{name}_") for key in extras), f"{name}: extras must be named {name}_<name>"
    return Built(module.to(ctx.backbone.device), groups, extras)


def build_method(name: str, ctx: MethodContext) -> tuple[nn.Module, list[dict]]:
    """:func:`build` without the extras, for callers that need none (source teachers, tests)."""
    module, groups, _ = build(name, ctx)
    return module, groups
