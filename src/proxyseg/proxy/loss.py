"""Distillation loss (METHOD §5): ``alpha * KL + beta * MSE(X, W H) + gamma * |H|``.

The KL term is the binary KL divergence between the teacher's and the proxy's sigmoid outputs, computed
from the logits without clamping any probability: ``KL(teacher ‖ proxy)`` (``kd_direction =
"teacher_proxy"``, the usual distillation direction, the default) or ``KL(proxy ‖ teacher)``
(``"proxy_teacher"``, what the authors' code computes). Clamping both probabilities at 1e-6, as before,
gave a proxy saturated beyond |logit| ≈ 14 exactly zero gradient however wrong it was.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: ``teacher_proxy``: KL(teacher ‖ proxy) (forward, the default); ``proxy_teacher``: KL(proxy ‖ teacher).
from proxyseg.settings import KD_DIRECTIONS
from proxyseg.settings import Proxy as ProxySettings


def check_kd_direction(direction: str) -> str:
    """``direction`` if it is one of :data:`KD_DIRECTIONS`, else a ``ValueError`` naming the choices."""
    if direction not in KD_DIRECTIONS:
        raise ValueError(f"kd_direction={direction!r}: choose one of {KD_DIRECTIONS} "
                         "(teacher_proxy = KL(teacher || proxy), proxy_teacher = KL(proxy || teacher))")
    return direction


def _bernoulli_kl_logits(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Elementwise ``KL(Bernoulli(σ(a)) ‖ Bernoulli(σ(b)))`` from the logits ``a``, ``b``.

    ``= BCEWithLogits(b, σ(a)) − H(σ(a)) = σ(a) (a − b) + softplus(b) − softplus(a)``: with
    ``BCEWithLogits(b, p) = softplus(b) − p b`` and ``−H(σ(a)) = σ(a) a − softplus(a)``. Nothing is
    clamped or logged, so it is finite for any finite logits, exactly 0 where ``a == b``, and its gradients
    are the exact ones: ``∂/∂b = σ(b) − σ(a)`` and ``∂/∂a = σ(a)(1 − σ(a))(a − b)``. Absolute rounding
    error is about ``eps · (|a| + |b|)``.
    """
    return torch.sigmoid(a) * (a - b) + F.softplus(b) - F.softplus(a)


def binary_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, *,
              direction: str = ProxySettings.kd_direction) -> torch.Tensor:
    """Binary KL between the teacher's and the proxy's sigmoid outputs, summed over classes, averaged over
    frames (and batch).

    ``direction``: ``"teacher_proxy"`` (default) = ``KL(σ(z_t) ‖ σ(z_s))`` =
    ``BCEWithLogits(z_s, σ(z_t)) − H(σ(z_t))``; ``"proxy_teacher"`` = ``KL(σ(z_s) ‖ σ(z_t))``. Both are
    computed from the logits (no clamping): a saturated, wrong proxy still gets its gradient. Every frame
    counts: the teacher gives soft targets everywhere; only classes a black-box teacher does not know (NaN
    logits, :mod:`proxyseg.teacher.blackbox`) are left out. Inputs are
    ``(B, C, T)`` logits; half-precision inputs are computed in float32.
    """
    check_kd_direction(direction)
    dtype = torch.promote_types(torch.promote_types(student_logits.dtype, teacher_logits.dtype), torch.float32)
    z_s, z_t = student_logits.to(dtype), teacher_logits.to(dtype)
    known = torch.isfinite(z_t)  # a black-box teacher's unknown classes are NaN: no target there
    if not bool(known.all()):
        z_t = torch.where(known, z_t, torch.zeros_like(z_t))
    kl = _bernoulli_kl_logits(z_t, z_s) if direction == "teacher_proxy" else _bernoulli_kl_logits(z_s, z_t)
    return (kl * known).sum(dim=1).mean()


def distillation_loss(out: dict[str, torch.Tensor], teacher_logits: torch.Tensor, spectrogram: torch.Tensor,
                      alpha: float, beta: float, gamma: float,
                      kd_direction: str = ProxySettings.kd_direction) -> dict[str, torch.Tensor]:
    """The total loss and its three terms (for the training curve); the weights are the proxy settings'
    (:class:`proxyseg.settings.Proxy`). ``kd_direction``: see :func:`binary_kl`."""
    kd = binary_kl(out["logits"], teacher_logits, direction=kd_direction)
    nmf = torch.mean((spectrogram - out["X_hat"]) ** 2)
    sparsity = out["H"].abs().mean()
    return {"loss": alpha * kd + beta * nmf + gamma * sparsity, "kd": kd, "nmf": nmf, "l1": sparsity}
