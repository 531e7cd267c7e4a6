"""MPT composition: shapes, rank, what gets gradients."""

import pytest
import torch

from pipeline.methods.mpt import MultitaskPrompt, TargetPrompt, low_rank_ones
from pipeline.training.loop import trainable_parameter_count

L, D = 6, 10


def generator() -> torch.Generator:
    return torch.Generator().manual_seed(0)


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_student_prompt_shapes_and_rank(rank):
    shared = torch.randn(L, D)
    student = MultitaskPrompt(shared, tasks=3, rank=rank, generator=generator())
    assert student.u.shape == (3, L, rank) and student.v.shape == (3, rank, D)
    prompts = student(torch.tensor([0, 2, 2, 1]))
    assert prompts.shape == (4, L, D)
    # Each task's modulation W_k = U_k V_k has rank exactly r (generic factors).
    for k in range(3):
        assert torch.linalg.matrix_rank(student.u[k] @ student.v[k]).item() == rank
    # Same task id -> same prompt; prompt = P ∘ W_k element-wise.
    assert torch.equal(prompts[1], prompts[2])
    assert torch.allclose(prompts[0], shared * (student.u[0] @ student.v[0]))


def test_factors_start_near_ones_so_first_prompt_is_p():
    u, v = low_rank_ones(None, L, D, rank=2, generator=generator())
    assert torch.allclose(u @ v, torch.ones(L, D), atol=0.05)


def test_frozen_p_gets_no_gradient_and_factor_does():
    shared = torch.randn(L, D)
    u, v = low_rank_ones(None, L, D, 1, generator())
    target = TargetPrompt(shared, u, v, train_shared=False)
    (target() ** 2).sum().backward()
    assert target.u.grad is not None and target.u.grad.abs().sum() > 0
    assert target.v.grad is not None and target.v.grad.abs().sum() > 0
    assert not target.shared.requires_grad and target.shared.grad is None
    assert "shared" not in dict(target.named_parameters())
    assert trainable_parameter_count(target) == L + D  # l + d trainable with rank one, as in the paper


def test_trainable_p_variant_counts_l_times_d_more():
    u, v = low_rank_ones(None, L, D, 1, generator())
    target = TargetPrompt(torch.randn(L, D), u, v, train_shared=True)
    assert trainable_parameter_count(target) == L * D + L + D


def test_student_gradients_reach_p_and_only_sampled_factors():
    student = MultitaskPrompt(torch.randn(L, D), tasks=3, rank=1, generator=generator())
    student(torch.tensor([0, 0, 2])).sum().backward()
    assert student.shared.grad.abs().sum() > 0
    assert student.u.grad[0].abs().sum() > 0 and student.u.grad[2].abs().sum() > 0
    assert student.u.grad[1].abs().sum() == 0  # task 1 was not in the batch
