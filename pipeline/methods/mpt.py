"""Multitask Prompt Tuning (Wang et al., ICLR 2023): a shared prompt P modulated by low-rank task factors.

Source task k uses ``P ∘ (U_k V_k)`` with ``U_k`` (l, r) and ``V_k`` (r, d); rank one is the paper's
``P* ∘ (u_k v_kᵀ)``. A target task reuses P (frozen by default) and trains only its own ``U V``.
"""

from __future__ import annotations

import torch
from torch import nn

from pipeline.errors import PipelineError
from pipeline.methods.base import Built, MethodContext
from pipeline.store.tensors import load_tensors


def low_rank_ones(count: int | None, length: int, dim: int, rank: int, generator: torch.Generator):
    """Factors whose product is all ones (so the first prompt equals P), plus a little noise.

    The noise breaks the symmetry between rank components, which would otherwise get identical
    gradients forever when r > 1.
    """
    lead = () if count is None else (count,)
    scale = rank**-0.5
    u = torch.full((*lead, length, rank), scale) + 0.01 * torch.randn((*lead, length, rank), generator=generator)
    v = torch.full((*lead, rank, dim), scale) + 0.01 * torch.randn((*lead, rank, dim), generator=generator)
    return u, v


class MultitaskPrompt(nn.Module):
    """The distillation student: shared P (l, d) and per-task factors U (K, l, r), V (K, r, d).

    ``decomposition=False`` is the ablation without task factors: U and V are fixed buffers whose product is
    exactly all ones, so every source task's prompt is P itself and only P is trained. They are still saved, so a
    target ``mpt`` run starts from L = ones (its prompt = P) and trains L as usual.
    """

    def __init__(
        self, shared: torch.Tensor, tasks: int, rank: int, generator: torch.Generator, decomposition: bool = True
    ) -> None:
        super().__init__()
        length, dim = shared.shape
        self.shared = nn.Parameter(shared.detach().clone())
        if decomposition:
            u, v = low_rank_ones(tasks, length, dim, rank, generator)
            self.u = nn.Parameter(u)
            self.v = nn.Parameter(v)
        else:
            # Buffers, not frozen Parameters: no gradient, no optimizer state, but saved with the module. The
            # first rank component is ones, the others zero, so U V is exactly ones (r^-0.5 · r^-0.5 · r is not).
            v = torch.zeros((tasks, rank, dim))
            v[:, 0] = 1.0
            self.register_buffer("u", torch.ones((tasks, length, rank)))
            self.register_buffer("v", v)

    @classmethod
    def of(cls, shared: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> MultitaskPrompt:
        """A student holding given P and factors (e.g. imported from a PEFT adapter: pipeline/methods/peft_mpt.py)."""
        module = cls(shared, tasks=u.shape[0], rank=u.shape[-1], generator=torch.Generator())
        with torch.no_grad():
            module.u.copy_(u)
            module.v.copy_(v)
        return module

    @property
    def factors(self) -> list[nn.Parameter]:
        """The trainable task factors (none without decomposition)."""
        return [f for f in (self.u, self.v) if isinstance(f, nn.Parameter)]

    def forward(self, task_ids: torch.Tensor) -> torch.Tensor:
        """Per-example prompts (B, l, d) for source task ids (B,)."""
        return self.shared.unsqueeze(0) * (self.u[task_ids] @ self.v[task_ids])

    def export(self) -> dict[str, torch.Tensor]:
        return {"shared": self.shared.detach(), "u": self.u.detach(), "v": self.v.detach()}


class TargetPrompt(nn.Module):
    """A target task's prompt ``P ∘ (U V)``: P frozen (a buffer) unless ``train_shared`` is set."""

    def __init__(self, shared: torch.Tensor, u: torch.Tensor, v: torch.Tensor, train_shared: bool = False) -> None:
        super().__init__()
        if train_shared:
            self.shared = nn.Parameter(shared.detach().clone())
        else:
            # A buffer, not a frozen Parameter: no gradient, no optimizer state, saved with the module.
            self.register_buffer("shared", shared.detach().clone())
        self.u = nn.Parameter(u.detach().clone())
        self.v = nn.Parameter(v.detach().clone())

    def forward(self, batch: object = None) -> torch.Tensor:
        """The (l, d) target prompt, the same for every example; the batch is accepted for a uniform interface."""
        return self.shared * (self.u @ self.v)

    def export(self) -> dict[str, torch.Tensor]:
        """L's factors, P (so the run exports as a one-task PEFT MultitaskPromptTuning adapter too) and P ∘ L."""
        factors = {"shared": self.shared.detach(), "u": self.u.detach(), "v": self.v.detach()}
        return {**factors, "prompt": self.forward().detach()}


def widened(u: torch.Tensor, v: torch.Tensor, rank: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean source factors U (l, r0), V (r0, d) grown to rank ``rank`` (params ``adapt.rank``) without changing
    their product: the new V rows start at zero, the new U columns at small seeded noise, so that both get a
    gradient from the first step (a zero U column and a zero V row would both stay zero forever)."""
    have = u.shape[1]
    rank = rank or have
    if rank < have:
        raise PipelineError(f"params.yaml: adapt.rank is {rank} but distill.rank is {have}; adapt.rank must be >= it")
    if rank == have:
        return u, v
    generator = torch.Generator().manual_seed(seed)
    extra_u = 0.01 * torch.randn((u.shape[0], rank - have), generator=generator)
    return torch.cat([u, extra_u.to(u)], dim=1), torch.cat([v, v.new_zeros((rank - have, v.shape[1]))], dim=0)


def build(ctx: MethodContext) -> Built:
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
    u, v = widened(tensors["u"].mean(dim=0), tensors["v"].mean(dim=0), ctx.options.rank, ctx.seed)
    module = TargetPrompt(shared, u, v, train_shared=train_shared)
    groups = [{"params": [module.u, module.v], "lr": ctx.steps.factor_lr}]
    if train_shared:
        groups.append({"params": [module.shared], "lr": ctx.steps.lr})
    return Built(module, groups)


def build_full(ctx: MethodContext) -> Built:
    """``mpt_full``, the paper's target adaptation: P and L = U V both trained from distill's P and mean factors.

    P is a full prompt (learning rate ``lr``), U and V factors (``factor_lr``): l·d + l·r + r·d parameters.
    """
    loaded, _, _ = build(ctx)  # P and the mean source factors, checked against the backbone and prompt length
    module = TargetPrompt(loaded.shared, loaded.u, loaded.v, train_shared=True)
    groups = [
        {"params": [module.shared], "lr": ctx.steps.lr},
        {"params": [module.u, module.v], "lr": ctx.steps.factor_lr},
    ]
    return Built(module, groups)
