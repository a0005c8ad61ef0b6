"""Agreement of two binary decision sequences, frame by frame: F1 against a reference and Cohen's kappa.
Read by fidelity (a proxy against its teacher), the proxies' calibration and the segment report, so it
lives below all three."""

from __future__ import annotations

import numpy as np

__all__ = ["cohen_kappa", "frame_f1"]


def frame_f1(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """F1 of binary decisions ``a`` against reference decisions ``b`` over the frames where ``mask`` is true.

    Used for fidelity (proxy decisions vs teacher decisions). Two all-negative inputs agree perfectly,
    so F1 is 1.0 there rather than undefined.
    """
    a, b = np.asarray(a).astype(bool), np.asarray(b).astype(bool)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    if mask is not None:
        mask = np.asarray(mask).astype(bool)
        if mask.shape != a.shape:
            raise ValueError(f"mask shape {mask.shape} differs from {a.shape}")
        a, b = a[mask], b[mask]
    tp = int(np.sum(a & b))
    errors = int(np.sum(a != b))
    return 1.0 if tp + errors == 0 else 2.0 * tp / (2.0 * tp + errors)


def cohen_kappa(a: np.ndarray, b: np.ndarray) -> float:
    """Cohen's kappa of two binary decision sequences: their agreement beyond what their rates of positives
    alone would give by chance (0: chance, 1: full agreement). NaN where chance agreement is already full
    (both constant and equal), where kappa says nothing."""
    a, b = np.asarray(a).astype(bool).ravel(), np.asarray(b).astype(bool).ravel()
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    if a.size == 0:
        return float("nan")
    pa, pb = float(a.mean()), float(b.mean())
    observed = float(np.mean(a == b))
    chance = pa * pb + (1.0 - pa) * (1.0 - pb)
    return float("nan") if chance >= 1.0 else (observed - chance) / (1.0 - chance)
