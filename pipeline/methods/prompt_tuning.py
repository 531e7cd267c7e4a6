"""Prompt tuning (Lester et al., 2021): one trainable l x d matrix prepended to the input embeddings."""

from __future__ import annotations

import torch
from torch import nn

from pipeline.methods.base import Built, MethodContext, vocab_init


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
    """``pt``: a fresh prompt from sampled vocabulary embeddings, the baseline."""
    module = SoftPrompt(vocab_init(ctx))
    return Built(module, [{"params": [module.weight], "lr": ctx.steps.lr}])
