"""ATTEMPT (Asai et al., 2022): an input-dependent attentional mixture of frozen source prompts and a target prompt.

For example i, ``prompt_i = P_t + Σ_j a_ij P_j`` over the K frozen source prompts and the trainable target prompt
P_t itself, with ``a_i = softmax_j(<mean(P_j), G(mean(X_i))> / T)``: ``mean`` pools over tokens (X_i: the frozen
backbone's input embeddings of the example's real tokens), ``G(x) = LayerNorm(W_up SiLU(W_down x))`` is the
attention's trainable projection, and T = d·e (ATTEMPT's 2087 for d = 768), which keeps the first mixtures near
uniform. ATTEMPT max-pools; the mean is this pipeline's choice (it ignores padding without masking tricks).
Trainable: l·d (P_t) + 2·d·h (W_down, W_up, no bias, h = 100 as in ATTEMPT) + 2·d (LayerNorm).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.data.batching import Batch
from pipeline.methods.base import Built, MethodContext, seeded, source_prompts, vocab_init


HIDDEN = 100  # h, the projection's bottleneck (ATTEMPT's attn_W_down width)


class AttentionalMixture(nn.Module):
    """Per-example prompts (B, l, d) mixed from frozen sources (K, l, d) and a trainable target prompt (l, d)."""

    def __init__(
        self, sources: torch.Tensor, target: torch.Tensor, embed: Callable[[torch.Tensor], torch.Tensor], hidden: int
    ) -> None:
        super().__init__()
        dim = target.shape[1]
        self.register_buffer("sources", sources.detach().clone())  # frozen: no gradient, no optimizer state
        self.target = nn.Parameter(target.detach().clone())
        self.down = nn.Linear(dim, hidden, bias=False)
        self.up = nn.Linear(hidden, dim, bias=False)
        self.norm = nn.LayerNorm(dim)
        self.temperature = dim * math.e
        # A plain attribute, not a submodule: the backbone's embedding stays out of this module's parameters,
        # state dict and checkpoints.
        self.embed = embed

    def prompts(self) -> torch.Tensor:
        """The K + 1 mixable prompts (K + 1, l, d): the sources, then the target prompt."""
        return torch.cat([self.sources, self.target.unsqueeze(0)])

    def attention(self, batch: Batch) -> torch.Tensor:
        """Mixture weights (B, K + 1) over :meth:`prompts`, from each example's mean input embedding."""
        tokens = self.embed(batch.input_ids)  # (B, T, d), no gradient: the embedding is frozen
        mask = batch.attention_mask.unsqueeze(-1).to(tokens.dtype)
        pooled = (tokens * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)  # (B, d)
        query = self.norm(self.up(F.silu(self.down(pooled))))  # (B, d)
        keys = self.prompts().mean(dim=1)  # (K + 1, d)
        return torch.softmax(query @ keys.T / self.temperature, dim=-1)

    def forward(self, batch: Batch) -> torch.Tensor:
        """Per-example prompts (B, l, d)."""
        return self.target + torch.einsum("bk,kld->bld", self.attention(batch), self.prompts())

    def export(self) -> dict[str, torch.Tensor]:
        """Everything needed to rebuild the mixture (sources included); there is no single prompt to export."""
        return {name: tensor.detach() for name, tensor in self.state_dict().items()}


def build(ctx: MethodContext) -> Built:
    """``attempt``: frozen sources from results/source; target prompt (lr) from sampled vocabulary; projection
    at ``encoder_lr``."""
    sources = torch.stack(list(source_prompts(ctx, "attempt").values()))
    with seeded(ctx.seed):
        # Backbone.embed: fp32 whatever backbone.dtype, as the projection is (a bf16 backbone's raw embedding
        # module fed bf16 into the fp32 Linear and failed on CPUs with native bf16)
        module = AttentionalMixture(sources, vocab_init(ctx), ctx.backbone.embed, HIDDEN)
    projection = [p for name, p in module.named_parameters() if name != "target"]
    groups = [
        {"params": [module.target], "lr": ctx.steps.lr},
        {"params": projection, "lr": ctx.options.encoder_lr},
    ]
    return Built(module, groups)
