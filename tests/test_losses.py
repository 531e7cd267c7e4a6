"""The distillation loss: zero at the teacher, the expected behaviour in temperature."""

import pytest
import torch

from pipeline.training.losses import distillation_loss, hidden_mse, softened_kl, task_loss


def test_zero_when_student_equals_teacher():
    logits, hidden = torch.randn(5, 3), torch.randn(5, 8)
    parts = distillation_loss(logits, logits.clone(), hidden, hidden.clone(), temperature=2.0)
    assert parts["kl"].item() == pytest.approx(0.0, abs=1e-6)
    assert parts["mse"].item() == pytest.approx(0.0, abs=1e-12)


def test_positive_when_they_differ():
    parts = distillation_loss(torch.randn(5, 3), torch.randn(5, 3), torch.randn(5, 8), torch.randn(5, 8), 1.0)
    assert parts["kl"].item() > 0 and parts["mse"].item() > 0


def test_temperature_behaviour():
    torch.manual_seed(0)
    student, teacher = torch.randn(64, 4), torch.randn(64, 4)
    temps = [1.0, 2.0, 4.0, 8.0, 32.0]
    raw = [softened_kl(student, teacher, t).item() / t**2 for t in temps]
    scaled = [softened_kl(student, teacher, t).item() for t in temps]
    # Softening alone shrinks the KL as T grows ...
    assert all(a > b for a, b in zip(raw, raw[1:]))
    # ... and the T² factor makes it approach the logit-matching limit mean‖Δz - mean(Δz)‖² / (2C).
    delta = student - teacher
    limit = ((delta - delta.mean(dim=1, keepdim=True)) ** 2).sum(dim=1).mean().item() / (2 * 4)
    assert scaled[-1] == pytest.approx(limit, rel=0.05)
    assert abs(scaled[-1] - limit) < abs(scaled[0] - limit)


def test_task_loss_is_cross_entropy_over_labels():
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    labels = torch.tensor([0, 0])
    expected = (torch.log1p(torch.exp(torch.tensor(-2.0))) + torch.log1p(torch.exp(torch.tensor(2.0)))) / 2
    assert task_loss(logits, labels).item() == pytest.approx(expected.item(), rel=1e-5)


def test_hidden_mse_value():
    assert hidden_mse(torch.zeros(2, 2), torch.ones(2, 2)).item() == pytest.approx(1.0)
