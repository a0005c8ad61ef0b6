"""Distillation loss (METHOD §5): ``alpha * KL(teacher || proxy) + beta * MSE(X, W H) + gamma * |H|``."""

from __future__ import annotations

import torch


def binary_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """KL between the teacher's and the proxy's Bernoulli outputs, summed over classes, averaged over frames.

    Every frame and class counts: the teacher gives soft targets everywhere, so nothing is masked.
    Inputs are ``(B, C, T)`` logits.
    """
    p = torch.sigmoid(teacher_logits).clamp(eps, 1 - eps)
    q = torch.sigmoid(student_logits).clamp(eps, 1 - eps)
    kl = p * (p.log() - q.log()) + (1 - p) * ((1 - p).log() - (1 - q).log())
    return kl.sum(dim=1).mean()


def distillation_loss(out: dict[str, torch.Tensor], teacher_logits: torch.Tensor, spectrogram: torch.Tensor,
                      alpha: float = 10.0, beta: float = 1.0, gamma: float = 0.1) -> dict[str, torch.Tensor]:
    """The total loss and its three terms (for the training curve)."""
    kd = binary_kl(out["logits"], teacher_logits)
    nmf = torch.mean((spectrogram - out["X_hat"]) ** 2)
    sparsity = out["H"].abs().mean()
    return {"loss": alpha * kd + beta * nmf + gamma * sparsity, "kd": kd, "nmf": nmf, "l1": sparsity}
