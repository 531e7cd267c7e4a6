"""Task loss and the MPT distillation loss (Wang et al., 2023, Eq. 3-5)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def task_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the label words only: logits (B, C), labels (B,)."""
    return F.cross_entropy(logits, labels)


def softened_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher ‖ student) of temperature-softened label distributions, scaled by T².

    The T² factor (Hinton et al., 2015) keeps the gradient scale comparable across temperatures:
    softening alone shrinks the KL roughly as 1/T².
    """
    teacher = F.log_softmax(teacher_logits / temperature, dim=-1)
    student = F.log_softmax(student_logits / temperature, dim=-1)
    kl = F.kl_div(student, teacher, log_target=True, reduction="batchmean")
    return kl * temperature**2


def hidden_mse(student_hidden: torch.Tensor, teacher_hidden: torch.Tensor) -> torch.Tensor:
    """Mean squared error of the hidden states at the prediction position: (B, d) each."""
    return F.mse_loss(student_hidden, teacher_hidden)


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    student_hidden: torch.Tensor,
    teacher_hidden: torch.Tensor,
    temperature: float,
) -> dict[str, torch.Tensor]:
    """``L_logits + L_hidden`` of the paper; the caller weights their sum by λ and adds the task loss."""
    return {
        "kl": softened_kl(student_logits, teacher_logits, temperature),
        "mse": hidden_mse(student_hidden, teacher_hidden),
    }
