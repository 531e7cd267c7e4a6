"""Context-aware Prompt Tuning (Blau et al., 2024) for causal LMs, on PEFT's CPTEmbedding.

The prompt is k training examples written out as the model reads an input (each example's tokens, its label word's
tokens, a newline), drawn class-balanced with the run's seed (``adapt.cpt_examples``). CPTEmbedding keeps their
embeddings frozen and trains a delta on them. At the start of every forward pass it projects each token's delta
back into an L2 ball of radius ε·sqrt(d / 2048) (``adapt.cpt_epsilon`` = ε, PEFT's default 0.1: 0.053 for
d = 576). Nothing reads the delta between an optimizer step and the next forward pass, so this is projecting after
every step; evaluation and export read it through a forward pass too.
Label tokens never change (CPT masks their gradient), so the context keeps its true labels.
Trainable: L·d, L the context's tokens (the label tokens' rows are counted but stay fixed).
PEFT's CPT loss (on the context's own labels, with decay) is not used: every method here trains on label-word scores.
"""

from __future__ import annotations


import numpy as np
import torch
from peft import CPTConfig, CPTEmbedding, TaskType
from torch import nn

from pipeline.model.backbone import Backbone
from pipeline.data.batching import Batch, TaskData
from pipeline.errors import PipelineError
from pipeline.methods.base import Built, MethodContext, target_task


SEPARATOR = "\n"  # between one example's label word and the next example
# CPT's token types for example i (0-based): 4i + 1 template, 4i + 2 input, 4i + 3 output template, 4i + 4 label.
INPUT, FORMAT, LABEL = 2, 3, 4


def balanced_rows(labels: list[int], count: int, seed: int) -> list[int]:
    """``count`` distinct rows, round-robin over the classes (in a seeded order) so the classes differ by at most one
    unless one runs out; returned in a seeded order so that no class always comes last."""
    rng = np.random.default_rng(seed)
    pools = [rng.permutation([r for r, y in enumerate(labels) if y == c]).tolist() for c in sorted(set(labels))]
    pools = [pools[i] for i in rng.permutation(len(pools))]
    picked: list[int] = []
    while len(picked) < min(count, len(labels)):
        picked += [pool.pop() for pool in pools if pool][: count - len(picked)]
    return [picked[i] for i in rng.permutation(len(picked))]


def context_tokens(backbone: Backbone, task: TaskData, count: int, seed: int) -> tuple[list[int], list[int]]:
    """Token ids of ``count`` training examples written out with their label words, and CPT's type of each token."""
    split = task.splits["train"]
    separator = backbone.tokenizer(SEPARATOR, add_special_tokens=False)["input_ids"]
    ids: list[int] = []
    types: list[int] = []
    for i, row in enumerate(balanced_rows(split.labels, count, seed)):
        label = task.labels.token_ids[split.labels[row]]
        for part, kind in ((split.token_ids[row], INPUT), (label, LABEL), (separator, FORMAT)):
            ids += part
            types += [4 * i + kind] * len(part)
    return ids, types


class ContextPrompt(nn.Module):
    """The (L, d) context prompt: frozen example embeddings plus a projected trainable delta."""

    def __init__(self, embedding: CPTEmbedding) -> None:
        super().__init__()
        self.cpt = embedding
        self.register_buffer("indices", torch.arange(embedding.embedding.num_embeddings), persistent=False)

    def forward(self, batch: Batch | None = None) -> torch.Tensor:
        """The (L, d) prompt, the same for every example (the batch is accepted for a uniform interface)."""
        return self.cpt(self.indices)

    def export(self) -> dict[str, torch.Tensor]:
        return {"prompt": self.forward().detach(), "delta": self.cpt.delta_embedding.weight.detach()}


def build(ctx: MethodContext) -> Built:
    """``cpt``: the delta on the context's embeddings, trained at the full-prompt lr."""
    if ctx.backbone.info.kind != "causal":
        raise PipelineError("cpt: not supported for this backbone (causal LMs only)")
    ids, types = context_tokens(ctx.backbone, target_task(ctx, "cpt"), ctx.options.cpt_examples, ctx.seed)
    epsilon = ctx.options.cpt_epsilon
    config = CPTConfig(
        task_type=TaskType.CAUSAL_LM, cpt_token_ids=ids, cpt_tokens_type_mask=types,
        opt_projection_epsilon=epsilon, opt_projection_format_epsilon=epsilon,
    )
    config.token_dim = ctx.backbone.hidden_size  # PEFT sets it when wrapping a model; this embedding stands alone
    module = ContextPrompt(CPTEmbedding(config, ctx.backbone.input_embeddings))
    groups = [{"params": [module.cpt.delta_embedding.weight], "lr": ctx.steps.lr}]
    return Built(module, groups, {"cpt_tokens": len(ids)})
