"""How overlapping sliding windows become one output per frame (METHOD §3).

``prob_hamming`` (default, as pyannote.audio's ``Inference``, which the paper's evaluation uses): each
window's logits go through the sigmoid and the probabilities are averaged with a Hamming weight over the
window's frames, ``Σ_w hamming·p_w / Σ_w hamming``. ``prob_mean``: the same with uniform weights.
``logits_mean``: the sigmoid of a uniform mean of logits (proxyseg before this option existed); where windows
disagree it decides differently: logits (6, −2, −2) give 0.66 that way and 0.41 as a mean of
probabilities.

Whatever the mode, the aggregate is stored as logits (``logit(p)`` for the probability modes, clipped to
±:data:`MAX_LOGIT`), so files keep one layout, ``sigmoid(logits)`` is the aggregated probability, and the
proxies' KD targets follow the chosen aggregation. Other outputs (features S, activations H) are averaged
with the same weights.
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np

#: The aggregation modes (``inference.aggregate``; :class:`proxyseg.settings.Inference` takes its type and
#: default from here, so this module needs nothing above core).
Aggregate = Literal["prob_hamming", "prob_mean", "logits_mean"]
AGGREGATES = get_args(Aggregate)
DEFAULT: Aggregate = "prob_hamming"
#: |logit| of a probability clipped to [1e-9, 1 - 1e-9]
MAX_LOGIT = float(np.log((1 - 1e-9) / 1e-9))


def check(aggregate: str) -> str:
    if aggregate not in AGGREGATES:
        raise ValueError(f"inference.aggregate must be one of {', '.join(AGGREGATES)}, got {aggregate!r}")
    return aggregate


def window_weights(window: int, aggregate: str) -> np.ndarray:
    """Weight of each frame of a window, ``(window,)`` float64: Hamming for ``prob_hamming``, else 1."""
    if check(aggregate) == "prob_hamming":
        return np.hamming(window) if window > 1 else np.ones(window)
    return np.ones(window)


def summand(logits: np.ndarray, aggregate: str) -> np.ndarray:
    """What is summed for the first output (logits, float): probabilities or the logits themselves, float64."""
    z = np.asarray(logits, dtype=np.float64)
    if aggregate == "logits_mean":
        return z
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # the sigmoid, without overflow warnings


def finish(mean: np.ndarray, aggregate: str) -> np.ndarray:
    """The weighted mean of :func:`summand` back to logits, float32."""
    if aggregate == "logits_mean":
        return np.asarray(mean, dtype=np.float32)
    p = np.clip(mean, 1e-9, 1.0 - 1e-9)
    return (np.log(p) - np.log1p(-p)).astype(np.float32)

