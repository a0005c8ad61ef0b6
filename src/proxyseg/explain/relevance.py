"""Explanations of the NMF proxy (docs/method.md §7): local relevance, listenable masks, class prototypes.

Everything here is a pure array function: NumPy in, NumPy out (torch tensors are accepted and converted,
on any device), no model code. Conventions:

* ``H``     (K x T)  non-negative activations of one segment (``ReLU(Psi(input))``);
* ``theta`` (4 x K)  the proxy classifier's weights Θ (``y = Θ H``; its bias plays no part);
* ``W``     (F x K)  the NMF dictionary, one atom per column;
* ``X``     (F x T)  the log-power spectrogram ``log(1 + |STFT|^2)``;
* ``probs`` (T x 4)  class probabilities; every "4" axis follows :data:`proxyseg.core.frames.CLASSES`
  (speech, noise, music, overlap);
* ``r``     (K x 4)  relevance, one column per class.

Local relevance
---------------
``z_k = mean_t H[k, t]`` and ``r[k, c] = z_k Θ[c, k]``, divided by ``max_k r[k, c]`` so that the most
relevant component of each class has relevance exactly 1; components with ``r[k, c] > τ`` (τ = 0.5) are
the relevant ones. Values below -1 are possible (a component pushing *against* the class more strongly
than the best one pushes for it) and are kept as they are. **If ``max_k r[k, c] <= 0``** (no active
component speaks for class c in this segment, e.g. all activations are zero or every active component has
a negative weight) the column is set to **zero**: nothing is relevant for c, and no division by a
non-positive number flips signs.

Global relevance (prototypes)
-----------------------------
:class:`PrototypeAccumulator` averages the local relevance ``r[:, c]`` over the segments selected for
class c (:func:`select_segments`), and :func:`class_prototypes` projects the mean onto frequency:
``P_c(f) = Σ_k max(r̄[k, c], 0) W⁺[f, k]``. :func:`band_mass` summarises a prototype per frequency band.

Listenable explanations
-----------------------
:func:`explanation_mask` gives the soft mask ``M = Σ_{k relevant} w_k h_k / (W H + ε)`` (F x T, in [0, 1)).
:func:`masked_audio` turns it into audio in one of :data:`MASK_DOMAINS`: ``"linear"`` (default, METHOD
§7) multiplies the magnitude STFT by M and inverts with the original phase, so explanation and residual
(mask ``1 - M``) add up to the input; ``"log"`` (L2I) keeps the mask in the domain the dictionary models,
``X = log(1 + |STFT|²)``: the part's log-power spectrogram is ``M ⊙ X`` (L2I's component spectrogram
``X ⊙ Σ_relevant w_k h_k / (W H)``), resynthesised through ``|STFT_part| = sqrt(exp(M ⊙ X) - 1)`` with the
original phase. All components relevant gives the input back, none gives silence; explanation and
residual (``(1 - M) ⊙ X``) add up in X, not in the audio: ``(1 + |S_expl|²)(1 + |S_resid|²) = 1 + |S|²``.
Unlike the linear mask, the log-domain one depends on the level (``|S|`` relative to 1): it keeps about
``sqrt(M)`` of a quiet bin's magnitude and ``(1 + |S|²)^(M/2)``, much less than ``M |S|``, of a loud one.

Dictionaries with negative entries
----------------------------------
``learned_random`` proxies learn W without constraint from a random start, and W may get negative
entries: ``W = W⁺ - W⁻`` with ``W⁺ = max(W, 0)`` and ``W⁻ = max(-W, 0)`` (:func:`dictionary_parts`).
Masks and prototypes use the **non-negative part** ``W⁺`` (for the default ``fixed`` and the ``learned``
dictionaries, which are non-negative, ``W⁺ = W`` and nothing changes): a mask must be a fraction of the
spectrogram for the explanation to be a part of the audio (in [0, 1], explanation and residual
partitioning the input; with signed atoms ``Σ w_k h_k / (W H)`` can be negative or exceed 1, and
``W H`` itself can vanish or change sign), and a prototype should describe the same part of the spectrum
that the listenable explanation plays and the faithfulness test removes (which use ``W⁺`` too); band
shares (:func:`band_mass`) and the saliency comparison need a non-negative profile. The negative part is
not hidden: :func:`negative_prototypes` projects ``W⁻`` like ``W⁺`` (stored beside the prototypes as
``P_negative``), and the figures draw it below zero (dotted), so where an atom *lowers* the reconstructed
spectrum shows as what it is, energy whose absence the component accounts for.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from typing import Iterable, Mapping

import numpy as np
import pandas as pd

from proxyseg.core.atomic import atomic_path
from proxyseg.core.errors import InputError
from proxyseg.core.figures import new_figure, save_figure
from proxyseg.core.frames import CLASS_INDEX, CLASSES, FRAME_RATE

__all__ = [
    "ACTIVE",
    "DEFAULT_TAU",
    "DEFAULT_BANDS",
    "local_relevance",
    "frame_relevance",
    "relevant_components",
    "MASK_DOMAINS",
    "dictionary_parts",
    "negative_share",
    "explanation_mask",
    "mask_gain",
    "masked_audio",
    "class_prototypes",
    "negative_prototypes",
    "band_mass",
    "PrototypeAccumulator",
    "candidate_segments",
    "select_segments",
    "select_segments_across",
    "plot_local_explanation",
    "plot_prototypes",
    "Prototypes",
    "save_prototypes",
    "load_prototypes",
]

DEFAULT_TAU = 0.5
#: A component counts as active in a segment when its mean activation exceeds this (the faithfulness and
#: ground-truth checks' random-active baselines).
ACTIVE = 1e-3

#: Domains of a listenable explanation (:func:`masked_audio`); the first is the default.
from proxyseg.settings import MASK_DOMAINS  # noqa: E402

#: Frequency bands (Hz) of :func:`band_mass`: half-open ``[low, high)``, the topmost one closed so that the
#: Nyquist bin (8 kHz at 16 kHz) counts.
DEFAULT_BANDS: tuple[tuple[float, float], ...] = (
    (0.0, 100.0), (100.0, 250.0), (250.0, 500.0), (500.0, 1000.0),
    (1000.0, 2000.0), (2000.0, 4000.0), (4000.0, 8000.0),
)

_NUM_CLASSES = len(CLASSES)


# ----------------------------------------------------------------------------------------------- helpers

def _np(a, name: str, ndim: int | None = None) -> np.ndarray:
    """Array (float64) from a NumPy array, a list or a torch tensor (detached, moved to the CPU)."""
    if hasattr(a, "detach") and hasattr(a, "cpu"):  # torch.Tensor without importing torch
        a = a.detach().cpu().numpy()
    out = np.asarray(a, dtype=np.float64)
    if ndim is not None and out.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {out.shape}")
    return out


def _class_index(c: int | str) -> int:
    if isinstance(c, str):
        if c not in CLASS_INDEX:
            raise ValueError(f"unknown class {c!r}; expected one of {CLASSES}")
        return CLASS_INDEX[c]
    c = int(c)
    if not 0 <= c < _NUM_CLASSES:
        raise ValueError(f"class index {c} out of range 0..{_NUM_CLASSES - 1}")
    return c


def _check_h_theta(H, theta) -> tuple[np.ndarray, np.ndarray]:
    H = _np(H, "H", 2)
    theta = _np(theta, "theta", 2)
    if theta.shape[1] != H.shape[0]:
        raise ValueError(f"theta is {theta.shape} but H has {H.shape[0]} components; theta must be (C, K)")
    return H, theta


def _normalise_by_max(raw: np.ndarray, axis: int) -> np.ndarray:
    """Divide by the maximum along ``axis``; where that maximum is <= 0 the result is 0."""
    peak = raw.max(axis=axis, keepdims=True)
    ok = peak > 0
    return np.where(ok, raw / np.where(ok, peak, 1.0), 0.0)


# ---------------------------------------------------------------------------------------------- relevance

def local_relevance(H, theta, normalise: bool = True) -> np.ndarray:
    """Relevance ``r`` (K x C) of each component for each class in one segment (module docstring).

    ``r[k, c] = mean_t(H[k, t]) * theta[c, k]``, divided per class by its maximum over k (``normalise``);
    a class whose maximum is <= 0 gets a zero column. ``normalise=False`` returns the raw products.
    """
    H, theta = _check_h_theta(H, theta)
    if H.shape[1] == 0:
        raise ValueError("H has no frames")
    raw = H.mean(axis=1)[:, None] * theta.T  # (K, C)
    return _normalise_by_max(raw, axis=0) if normalise else raw


def frame_relevance(H, theta, normalise: str = "frame") -> np.ndarray:
    """Per-frame relevance ``(K, T, C)``: ``H[k, t] * theta[c, k]``, normalised like :func:`local_relevance`.

    ``normalise``: ``"frame"`` (default) divides each frame and class by its maximum over k (so each frame
    reads like a one-frame segment; a frame whose maximum is <= 0, e.g. silence with all activations zero,
    is all zeros); ``"segment"`` divides by the maximum over k *and* t (relevance comparable across frames);
    ``"none"`` keeps the raw products.
    """
    H, theta = _check_h_theta(H, theta)
    raw = H[:, :, None] * theta.T[:, None, :]  # (K, T, C)
    if normalise == "frame":
        return _normalise_by_max(raw, axis=0)
    if normalise == "segment":
        K, T, C = raw.shape
        flat = raw.reshape(K * T, C)
        return _normalise_by_max(flat, axis=0).reshape(K, T, C) if K * T else raw
    if normalise == "none":
        return raw
    raise ValueError(f"normalise must be 'frame', 'segment' or 'none', got {normalise!r}")


def relevant_components(r, tau: float = DEFAULT_TAU) -> dict[str, np.ndarray]:
    """For each class, the indices k with ``r[k, c] > tau``, most relevant first (ties: lower k first)."""
    r = _np(r, "r", 2)
    if r.shape[1] != _NUM_CLASSES:
        raise ValueError(f"r must be (K, {_NUM_CLASSES}), got {r.shape}")
    out = {}
    for c, name in enumerate(CLASSES):
        col = r[:, c]
        idx = np.flatnonzero(col > tau)
        out[name] = idx[np.argsort(-col[idx], kind="stable")].astype(np.int64)
    return out


def _component_index(components, K: int) -> np.ndarray:
    """Sorted unique component indices from indices (any integer sequence) or a boolean mask of length K."""
    if hasattr(components, "detach"):
        components = components.detach().cpu().numpy()
    comp = np.asarray(components)
    if comp.dtype == bool:
        if comp.shape != (K,):
            raise ValueError(f"a boolean component mask must have shape ({K},), got {comp.shape}")
        return np.flatnonzero(comp)
    comp = comp.reshape(-1)
    if comp.size == 0:
        return np.zeros(0, dtype=np.int64)
    if not np.issubdtype(comp.dtype, np.integer):
        if not (np.issubdtype(comp.dtype, np.floating) and np.all(comp == np.round(comp))):
            raise ValueError("component indices must be integers")
    comp = comp.astype(np.int64)
    if comp.min() < 0 or comp.max() >= K:
        raise ValueError(f"component indices must lie in 0..{K - 1}")
    return np.unique(comp)


def dictionary_parts(W) -> tuple[np.ndarray, np.ndarray]:
    """``(W⁺, W⁻)`` = ``(max(W, 0), max(-W, 0))``: non-negative parts with ``W = W⁺ - W⁻`` (module docstring)."""
    W = _np(W, "W", 2)
    return np.maximum(W, 0.0), np.maximum(-W, 0.0)


def negative_share(W) -> float:
    """``Σ|W⁻| / Σ|W|``: the share of the dictionary's mass in negative entries (0 for NMF dictionaries)."""
    W = _np(W, "W", 2)
    total = np.abs(W).sum()
    return float(np.maximum(-W, 0.0).sum() / total) if total > 0 else 0.0


def explanation_mask(W, H, components, eps: float = 1e-8) -> np.ndarray:
    """Soft mask ``M = Σ_{k in components} w_k h_k / (W H + eps)``, shape (F, T), values in [0, 1).

    ``components``: indices (any order; duplicates count once) or a boolean mask of length K. The masks
    of disjoint component sets add up, and over all K components they sum to ``WH / (WH + eps)``, i.e. 1
    wherever the reconstruction is well above ``eps``. H must be non-negative (it is: ``ReLU(Psi(.))``;
    ``ValueError`` otherwise). A dictionary with negative entries (``learned_random``) is used through its
    non-negative part ``W⁺ = max(W, 0)`` (module docstring: only then is M a fraction).
    """
    W = _np(W, "W", 2)
    H = _np(H, "H", 2)
    if W.shape[1] != H.shape[0]:
        raise ValueError(f"W is {W.shape} and H is {H.shape}: need W (F, K) and H (K, T)")
    if (H < 0).any():
        raise ValueError("explanation_mask needs non-negative activations H")
    W = np.maximum(W, 0.0)
    if eps <= 0:
        raise ValueError("eps must be positive")
    idx = _component_index(components, W.shape[1])
    full = W @ H
    part = W[:, idx] @ H[idx, :]
    return part / (full + eps)


def masked_audio(samples, mask, n_fft: int = 512, win_length: int = 400, domain: str = "linear",
                 level_gain: float = 1.0) -> np.ndarray:
    """Listenable explanation: apply ``mask`` (F x T, values in [0, 1]) to the STFT of ``samples``, keep
    the original phase and invert (``proxyseg.dsp.stft`` / ``istft``, same framing as ``X``).

    ``domain`` (:data:`MASK_DOMAINS`, module docstring): ``"linear"`` scales the magnitude, ``|S| M``;
    ``"log"`` scales the log-power spectrogram ``X = log(1 + |S|²)`` and resynthesises the magnitude
    ``sqrt(exp(M X) - 1)`` (L2I). Both give the input back for ``M = 1`` and silence for ``M = 0``.
    ``level_gain``: the file's gain before the proxy's spectrogram (``spectrogram.level_db``; the cache's
    ``gain`` attribute), so a ``"log"`` mask takes its fraction of the X the proxy saw; the audio keeps the
    file's own level. Returns float32 samples of the same length as ``samples``.
    """
    import torch

    from proxyseg.dsp import istft, stft

    if domain not in MASK_DOMAINS:
        raise ValueError(f"mask domain must be one of {MASK_DOMAINS}, got {domain!r}")
    x = torch.as_tensor(_np(samples, "samples", 1), dtype=torch.float32)
    spec = stft(x, n_fft=n_fft, win_length=win_length)
    m = torch.as_tensor(_np(mask, "mask", 2), dtype=torch.float64)
    if tuple(m.shape) != tuple(spec.shape):
        raise ValueError(f"mask is {tuple(m.shape)} but the STFT of the samples is {tuple(spec.shape)}")
    gain = mask_gain(spec.abs().double() * float(level_gain), m, domain)
    y = istft(spec * gain.float(), length=x.shape[0], n_fft=n_fft, win_length=win_length)
    return y.numpy().astype(np.float32)


def mask_gain(magnitude, mask, domain: str = "linear"):
    """Per-bin magnitude gain (torch, float64) that keeps the fraction ``mask`` of each bin: of its
    magnitude (``"linear"``: the mask itself) or of its log-power ``X = log(1 + |S|²)`` (``"log"``:
    ``sqrt(exp(M X) - 1) / |S|``, 0 where ``|S| = 0``). ``magnitude`` and ``mask``: tensors of one shape."""
    import torch

    if domain not in MASK_DOMAINS:
        raise ValueError(f"mask domain must be one of {MASK_DOMAINS}, got {domain!r}")
    if domain == "linear":
        return mask
    part = torch.sqrt(torch.expm1((mask * torch.log1p(magnitude.square())).clamp_min(0.0)))  # |STFT| of M ⊙ X
    return torch.where(magnitude > 0, part / torch.where(magnitude > 0, magnitude, 1.0), 0.0)


# --------------------------------------------------------------------------------------------- prototypes

def class_prototypes(mean_relevance, W) -> np.ndarray:
    """Class prototypes ``P`` (F x C): ``P[f, c] = Σ_k max(r̄[k, c], 0) W⁺[f, k]``, non-negative.

    ``W⁺ = max(W, 0)`` is W itself for a non-negative dictionary; for one with negative entries
    (``learned_random``) see the module docstring and :func:`negative_prototypes`.
    """
    r = _np(mean_relevance, "mean_relevance", 2)
    W = _np(W, "W", 2)
    if r.shape[0] != W.shape[1]:
        raise ValueError(f"mean_relevance is {r.shape} and W is {W.shape}: need (K, C) and (F, K)")
    return np.maximum(W, 0.0) @ np.maximum(r, 0.0)


def negative_prototypes(mean_relevance, W) -> np.ndarray:
    """The negative part's projection (F x C, non-negative): ``Σ_k max(r̄[k, c], 0) W⁻[f, k]``, so that
    ``class_prototypes - negative_prototypes`` is the signed ``Σ_k max(r̄[k, c], 0) W[f, k]``. Zero for a
    non-negative dictionary."""
    r = _np(mean_relevance, "mean_relevance", 2)
    W = _np(W, "W", 2)
    if r.shape[0] != W.shape[1]:
        raise ValueError(f"mean_relevance is {r.shape} and W is {W.shape}: need (K, C) and (F, K)")
    return np.maximum(-W, 0.0) @ np.maximum(r, 0.0)


def _check_bands(bands) -> list[tuple[float, float]]:
    out = [(float(lo), float(hi)) for lo, hi in bands]
    if not out:
        raise ValueError("need at least one band")
    for lo, hi in out:
        if not lo < hi:
            raise ValueError(f"band ({lo}, {hi}) must have low < high")
    ordered = sorted(out)
    for (lo0, hi0), (lo1, hi1) in zip(ordered, ordered[1:]):
        if lo1 < hi0:
            raise ValueError(f"bands ({lo0}, {hi0}) and ({lo1}, {hi1}) overlap")
    return out


def band_mass(P, freqs_hz, bands: Iterable[tuple[float, float]] = DEFAULT_BANDS) -> pd.DataFrame:
    """Share of each prototype's mass per frequency band: columns ``class, band_low_hz, band_high_hz, mass``.

    A bin at frequency f falls in band ``[low, high)``; the band with the highest upper edge is closed
    (``[low, high]``) so the Nyquist bin counts. Bins outside every band are ignored, and per class the
    masses are divided by their sum over the bands, so they sum to 1. A class whose prototype has no mass
    in any band (e.g. nothing was ever relevant for it) gets ``NaN``. ``P`` (F x C) must be non-negative
    (it is when W is); rows come class by class, bands in the given order.
    """
    P = _np(P, "P", 2)
    freqs = _np(freqs_hz, "freqs_hz", 1)
    if P.shape[0] != freqs.shape[0]:
        raise ValueError(f"P has {P.shape[0]} bins but freqs_hz has {freqs.shape[0]}")
    if P.shape[1] != _NUM_CLASSES:
        raise ValueError(f"P must be (F, {_NUM_CLASSES}), got {P.shape}")
    if (P < 0).any():
        raise ValueError("band_mass needs a non-negative prototype P")
    bands = _check_bands(bands)
    top = max(hi for _, hi in bands)
    sums = np.zeros((len(bands), _NUM_CLASSES))
    for b, (lo, hi) in enumerate(bands):
        sel = (freqs >= lo) & ((freqs < hi) | ((hi == top) & (freqs == hi)))
        sums[b] = P[sel].sum(axis=0)
    total = sums.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mass = np.where(total > 0, sums / np.where(total > 0, total, 1.0), np.nan)
    rows = [{"class": name, "band_low_hz": lo, "band_high_hz": hi, "mass": float(mass[b, c])}
            for c, name in enumerate(CLASSES) for b, (lo, hi) in enumerate(bands)]
    return pd.DataFrame(rows, columns=["class", "band_low_hz", "band_high_hz", "mass"])


class PrototypeAccumulator:
    """Running sum of local relevance per class, over the segments selected for that class.

    ``add(r, classes)`` adds column c of ``r`` (K x C) to class c's sum for every c in ``classes`` (names
    or indices; a segment may count for several classes). ``mean()`` is the (K, C) mean relevance; a class
    with no segment yet has a zero column (see ``counts``).
    """

    def __init__(self, num_components: int, num_classes: int = _NUM_CLASSES):
        if num_components <= 0:
            raise ValueError("num_components must be positive")
        self.sums = np.zeros((int(num_components), int(num_classes)))
        self.counts = np.zeros(int(num_classes), dtype=np.int64)

    @property
    def num_components(self) -> int:
        return self.sums.shape[0]

    def add(self, r, classes: int | str | Iterable[int | str]) -> None:
        r = _np(r, "r", 2)
        if r.shape != self.sums.shape:
            raise ValueError(f"r must be {self.sums.shape}, got {r.shape}")
        if isinstance(classes, (str, int, np.integer)):
            classes = [classes]
        for c in {_class_index(c) for c in classes}:
            self.sums[:, c] += r[:, c]
            self.counts[c] += 1

    def add_segment(self, H, theta, classes: int | str | Iterable[int | str]) -> np.ndarray:
        """Compute :func:`local_relevance` of one segment, add it, and return it."""
        r = local_relevance(H, theta)
        self.add(r, classes)
        return r

    def merge(self, other: "PrototypeAccumulator") -> None:
        if other.sums.shape != self.sums.shape:
            raise ValueError("accumulators of different shapes")
        self.sums += other.sums
        self.counts += other.counts

    def mean(self) -> np.ndarray:
        return self.sums / np.maximum(self.counts, 1)[None, :]

    def counts_by_class(self) -> dict[str, int]:
        return {name: int(self.counts[c]) for c, name in enumerate(CLASSES)}


# ------------------------------------------------------------------------------------ segment selection

def _activity(targets, threshold: float) -> np.ndarray:
    arr = _np(targets, "targets", 2)
    if arr.shape[1] != _NUM_CLASSES:
        raise ValueError(f"targets must be (T, {_NUM_CLASSES}), got {arr.shape}")
    return arr >= threshold  # UNKNOWN (-1) and NaN count as inactive


def candidate_segments(targets, segment_frames: int, min_fraction: float = 0.5, stride: int | None = None,
                       threshold: float = 0.5) -> dict[str, np.ndarray]:
    """Start frames of windows ``[s, s + segment_frames)`` in which each class is active on at least
    ``min_fraction`` of the frames.

    ``targets`` (T x 4): frame targets (1 active, 0 inactive, -1 unknown) or decisions (0/1, bool) or
    probabilities; a frame is active when its value is ``>= threshold`` (unknown counts as inactive).
    Windows start at ``0, stride, 2 stride, ...`` (default ``stride = segment_frames``: non-overlapping)
    and lie entirely inside the file.
    """
    active = _activity(targets, threshold)
    segment_frames = int(segment_frames)
    if segment_frames <= 0:
        raise ValueError("segment_frames must be positive")
    stride = segment_frames if stride is None else int(stride)
    if stride <= 0:
        raise ValueError("stride must be positive")
    if not 0 < min_fraction <= 1:
        raise ValueError("min_fraction must lie in (0, 1]")
    T = active.shape[0]
    starts = np.arange(0, T - segment_frames + 1, stride, dtype=np.int64)
    if starts.size == 0:
        return {name: np.zeros(0, dtype=np.int64) for name in CLASSES}
    csum = np.concatenate([np.zeros((1, _NUM_CLASSES)), np.cumsum(active, axis=0)])
    frac = (csum[starts + segment_frames] - csum[starts]) / segment_frames  # (S, 4)
    return {name: starts[frac[:, c] >= min_fraction - 1e-12] for c, name in enumerate(CLASSES)}


def _rng(rng) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def select_segments(targets, segment_frames: int, per_class: int, rng=0, min_fraction: float = 0.5,
                    stride: int | None = None, threshold: float = 0.5) -> dict[str, list[int]]:
    """Up to ``per_class`` start frames per class, drawn without replacement from
    :func:`candidate_segments`; returned sorted. Fewer come back when there are fewer candidates.

    ``rng``: a ``numpy.random.Generator`` or a seed; classes are drawn in the order of ``CLASSES``, so the
    same inputs and seed give the same segments.
    """
    gen = _rng(rng)
    cands = candidate_segments(targets, segment_frames, min_fraction, stride, threshold)
    out = {}
    for name in CLASSES:
        pool = cands[name]
        if pool.size > per_class:
            pool = np.sort(gen.choice(pool, size=int(per_class), replace=False))
        out[name] = [int(s) for s in pool]
    return out


def read_targets(path) -> dict[str, np.ndarray]:
    """Frame targets ``(T, 4)`` int8 per URI: a harmonised ``targets.h5`` (the labels), or a teacher's
    inference file or dump: then the teacher's decisions, ``p >= 0.5`` active, a class a black-box teacher
    does not know unknown (:func:`proxyseg.dictionary.build.read_frame_targets`). Explaining a black box on
    unlabelled audio draws its segments where the black box decided the class."""
    import h5py

    from proxyseg.dictionary.build import read_frame_targets

    with h5py.File(path, "r") as h5:
        return {uri: t for uri, (t, _) in read_frame_targets(h5, 0.5, path)[1].items()}


def select_segments_across(targets_by_file: Mapping[str, object], segment_frames: int, per_class: int,
                           rng=0, min_fraction: float = 0.5, stride: int | None = None,
                           threshold: float = 0.5) -> dict[str, list[tuple[str, int]]]:
    """Like :func:`select_segments` but pooling the candidates of many files (keys visited in sorted
    order, windows never cross files): ``{class: [(file, start_frame), ...]}``, sorted."""
    gen = _rng(rng)
    pools: dict[str, list[tuple[str, int]]] = {name: [] for name in CLASSES}
    for key in sorted(targets_by_file):
        cands = candidate_segments(targets_by_file[key], segment_frames, min_fraction, stride, threshold)
        for name in CLASSES:
            pools[name].extend((key, int(s)) for s in cands[name])
    out = {}
    for name in CLASSES:
        pool = pools[name]
        if len(pool) > per_class:
            pick = np.sort(gen.choice(len(pool), size=int(per_class), replace=False))
            pool = [pool[i] for i in pick]
        out[name] = list(pool)
    return out


# ------------------------------------------------------------------------------------------------ figures

_COLORS = {"speech": "tab:blue", "noise": "tab:gray", "music": "tab:orange", "overlap": "tab:red"}


def plot_local_explanation(path, X, probs, r, W, freqs_hz, class_name: str, components=None,
                           title: str | None = None, tau: float = DEFAULT_TAU, threshold: float = 0.5,
                           frame_rate: float = FRAME_RATE) -> None:
    """Four stacked panels explaining one segment for ``class_name``, saved to ``path`` (PNG):

    1. the spectrogram ``X`` (F x T) against time (s) and frequency (Hz);
    2. the four class probabilities ``probs`` (T x 4) with the decision ``threshold``;
    3. the relevance of every component for the class (``r``: (K, 4) or that class's column (K,)), the
       relevant ones (``components``; default ``r > tau``) highlighted, with the τ line;
    4. the frequency profile of the relevant atoms, ``Σ_{k relevant} r[k, c] w⁺_k`` vs Hz (the non-negative
       part of the atoms, which masks and prototypes use); where the atoms have negative entries
       (``learned_random``), ``-Σ r[k, c] w⁻_k`` is drawn below zero, dotted.
    """
    c = _class_index(class_name)
    name = CLASSES[c]
    X = _np(X, "X", 2)
    probs = _np(probs, "probs", 2)
    W = _np(W, "W", 2)
    freqs = _np(freqs_hz, "freqs_hz", 1)
    r = _np(r, "r")
    if r.ndim == 2:
        if r.shape[1] != _NUM_CLASSES:
            raise ValueError(f"r must be (K, {_NUM_CLASSES}) or (K,), got {r.shape}")
        rc = r[:, c]
    elif r.ndim == 1:
        rc = r
    else:
        raise ValueError(f"r must be (K, {_NUM_CLASSES}) or (K,), got {r.shape}")
    F, T = X.shape
    K = W.shape[1]
    if T == 0 or F == 0:
        raise ValueError(f"X is empty: {X.shape}")
    if W.shape[0] != F or freqs.shape[0] != F:
        raise ValueError(f"X has {F} bins, W {W.shape[0]}, freqs_hz {freqs.shape[0]}: they must agree")
    if probs.shape != (T, _NUM_CLASSES):
        raise ValueError(f"probs must be ({T}, {_NUM_CLASSES}), got {probs.shape}")
    if rc.shape[0] != K:
        raise ValueError(f"r has {rc.shape[0]} components but W has {K}")
    comp = np.flatnonzero(rc > tau) if components is None else _component_index(components, K)

    fig = new_figure(figsize=(9, 11))
    axes = fig.subplots(4, 1, gridspec_kw={"height_ratios": [3, 1.6, 1.6, 1.8]})
    duration = T / frame_rate
    t = (np.arange(T) + 0.5) / frame_rate
    half = (freqs[1] - freqs[0]) / 2 if F > 1 else 0.5
    ax = axes[0]
    im = ax.imshow(X, origin="lower", aspect="auto", cmap="magma", interpolation="nearest",
                   extent=(0.0, duration, freqs[0] - half, freqs[-1] + half))
    ax.set_ylabel("frequency (Hz)")
    ax.set_xlabel("time (s)")
    ax.set_title("log(1 + |STFT|²)")
    fig.colorbar(im, ax=ax, pad=0.01, fraction=0.03)

    ax = axes[1]
    for k, cls in enumerate(CLASSES):
        ax.plot(t, probs[:, k], color=_COLORS[cls], lw=2.2 if k == c else 1.0,
                alpha=1.0 if k == c else 0.7, label=cls)
    ax.axhline(threshold, color="k", ls="--", lw=0.8)
    ax.set_xlim(0.0, duration)
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("probability")
    ax.set_xlabel("time (s)")
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=4, fontsize=8, frameon=False)

    ax = axes[2]
    colors = np.where(np.isin(np.arange(K), comp), _COLORS[name], "lightgray")
    ax.bar(np.arange(K), rc, color=colors, width=1.0)
    ax.axhline(tau, color="k", ls="--", lw=0.8, label=f"τ = {tau:g}")
    ax.set_xlim(-0.5, K - 0.5)
    ax.set_xlabel("NMF component k")
    ax.set_ylabel(f"relevance ({name})")
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title(f"{comp.size} relevant component(s): {', '.join(map(str, comp[:12]))}"
                 + (" ..." if comp.size > 12 else ""), fontsize=9)

    ax = axes[3]
    if comp.size:
        Wpos, Wneg = dictionary_parts(W[:, comp])
        profile = Wpos @ rc[comp]
        ax.plot(freqs, profile, color=_COLORS[name], label="Σ r_k w⁺_k (non-negative part)")
        ax.fill_between(freqs, 0, profile, color=_COLORS[name], alpha=0.25)
        if Wneg.any():
            ax.plot(freqs, -(Wneg @ rc[comp]), color=_COLORS[name], ls=":",
                    label="-Σ r_k w⁻_k (negative part; not in masks or prototypes)")
            ax.axhline(0.0, color="k", lw=0.6)
            ax.legend(loc="upper right", fontsize=7)
    else:
        ax.text(0.5, 0.5, f"no component above τ = {tau:g}", ha="center", va="center",
                transform=ax.transAxes)
    ax.set_xlim(freqs[0], freqs[-1])
    ax.set_xlabel("frequency (Hz)")
    ax.set_ylabel("Σ r_k w⁺_k")
    ax.set_title(f"frequency profile of the relevant atoms ({name})", fontsize=9)

    fig.suptitle(title if title is not None else f"explanation for {name}")
    fig.tight_layout()
    save_figure(fig, path, cropped=True)


def plot_prototypes(path, P, freqs_hz, counts, normalise: bool = True, log_frequency: bool = True,
                    P_negative=None) -> None:
    """The four class prototypes ``P`` (F x 4) against frequency (Hz), one line per class, saved as PNG.

    ``counts``: segments averaged per class (a sequence of 4 or a ``{class: n}`` mapping), shown in the
    legend. ``normalise`` scales each prototype to a peak of 1 (shapes are compared, not magnitudes);
    an all-zero prototype is drawn flat and marked "nothing relevant". ``log_frequency`` uses a log axis
    (the 0 Hz bin is then left out). ``P_negative`` (F x 4, :func:`negative_prototypes`), where it is not
    all zero, is drawn below zero (dotted, same scale as P): the negative part of a signed dictionary.
    """
    P = _np(P, "P", 2)
    freqs = _np(freqs_hz, "freqs_hz", 1)
    if P.shape != (freqs.shape[0], _NUM_CLASSES):
        raise ValueError(f"P must be ({freqs.shape[0]}, {_NUM_CLASSES}), got {P.shape}")
    neg = None if P_negative is None else _np(P_negative, "P_negative", 2)
    if neg is not None and neg.shape != P.shape:
        raise ValueError(f"P_negative must be {P.shape}, got {neg.shape}")
    if neg is not None and not neg.any():
        neg = None
    if isinstance(counts, Mapping):
        n = [int(counts.get(cls, 0)) for cls in CLASSES]
    else:
        n = [int(v) for v in np.asarray(counts).reshape(-1)]
        if len(n) != _NUM_CLASSES:
            raise ValueError(f"counts must have {_NUM_CLASSES} entries")
    keep = freqs > 0 if log_frequency else np.ones_like(freqs, dtype=bool)
    if not keep.any():
        raise ValueError("no positive frequency to plot on a log axis")

    fig = new_figure(figsize=(8, 4.5))
    ax = fig.subplots()
    for c, cls in enumerate(CLASSES):
        y = P[keep, c]
        peak = np.abs(P[:, c]).max()
        label = f"{cls} (n={n[c]})"
        if peak <= 0:
            label += ", nothing relevant"
        elif normalise:
            y = y / peak
        ax.plot(freqs[keep], y, color=_COLORS[cls], label=label, lw=1.5,
                ls="-" if peak > 0 and n[c] > 0 else ":")
        if neg is not None and neg[:, c].any():
            scale = peak if normalise and peak > 0 else 1.0
            ax.plot(freqs[keep], -neg[keep, c] / scale, color=_COLORS[cls], lw=1.0, ls=":")
    if neg is not None:
        ax.axhline(0.0, color="k", lw=0.6)
        ax.text(0.01, 0.02, "dotted below 0: negative part of the atoms (not in P)", transform=ax.transAxes,
                fontsize=7)
    if log_frequency:
        ax.set_xscale("log")
    ax.set_xlim(freqs[keep][0], freqs[keep][-1])
    ax.set_xlabel("frequency (Hz)")
    ax.set_ylabel("relevance (peak = 1)" if normalise else "relevance")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="best", fontsize=9)
    ax.set_title("class prototypes  P_c(f) = Σ_k max(mean r[k, c], 0) W⁺[f, k]  "
                 f"(segments: {', '.join(f'{c} {k}' for c, k in zip(CLASSES, n))})", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, cropped=True)


# ------------------------------------------------------------------------------------------ save / load

@dataclass
class Prototypes:
    """What :func:`save_prototypes` stores: ``P`` (F x C), ``mean_relevance`` (K x C), ``counts`` (C,),
    ``freqs_hz`` (F,), ``classes``, the provenance record (a dict, parsed from JSON) and ``P_negative``
    (F x C, :func:`negative_prototypes`; None in files written without it)."""

    P: np.ndarray
    mean_relevance: np.ndarray
    counts: np.ndarray
    freqs_hz: np.ndarray
    classes: tuple[str, ...]
    provenance: dict
    P_negative: np.ndarray | None = None


def save_prototypes(path_npz, P, mean_relevance, counts, freqs_hz, provenance_json: str,
                    P_negative=None) -> None:
    """Write the prototypes to ``path_npz`` (uncompressed ``.npz``, atomically). ``provenance_json`` is a
    JSON string (e.g. from :func:`proxyseg.core.provenance.provenance_json`), stored as a string array;
    ``P_negative`` (optional, shaped like P) is stored when given."""
    P = _np(P, "P", 2)
    r = _np(mean_relevance, "mean_relevance", 2)
    counts = np.asarray(counts.detach().cpu().numpy() if hasattr(counts, "detach") else counts)
    if isinstance(counts.dtype, np.dtype) and counts.dtype == object:
        raise ValueError("counts must be numeric")
    counts = counts.astype(np.int64).reshape(-1)
    freqs = _np(freqs_hz, "freqs_hz", 1)
    C = P.shape[1]
    if r.shape[1] != C or counts.shape[0] != C or C != _NUM_CLASSES:
        raise ValueError(f"P {P.shape}, mean_relevance {r.shape} and counts {counts.shape} must all have "
                         f"{_NUM_CLASSES} classes")
    if freqs.shape[0] != P.shape[0]:
        raise ValueError(f"P has {P.shape[0]} bins but freqs_hz has {freqs.shape[0]}")
    extra = {}
    if P_negative is not None:
        extra["P_negative"] = _np(P_negative, "P_negative", 2)
        if extra["P_negative"].shape != P.shape:
            raise ValueError(f"P_negative must be {P.shape}, got {extra['P_negative'].shape}")
    json.loads(provenance_json)  # fail early on a malformed record
    buf = io.BytesIO()
    np.savez(buf, P=P, mean_relevance=r, counts=counts, freqs_hz=freqs,
             classes=np.array(CLASSES), provenance=np.array(provenance_json), **extra)
    with atomic_path(path_npz) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(buf.getvalue())


def load_prototypes(path_npz: str | os.PathLike) -> Prototypes:
    """Read what :func:`save_prototypes` wrote; raises :class:`InputError` on a missing or foreign file."""
    keys = ("P", "mean_relevance", "counts", "freqs_hz", "classes", "provenance")
    try:
        with np.load(path_npz, allow_pickle=False) as data:
            missing = [k for k in keys if k not in data.files]
            if missing:
                raise InputError(path_npz, f"not a prototype file (missing {', '.join(missing)}); "
                                           "write it with proxyseg.explain.relevance.save_prototypes")
            arrays = {k: data[k] for k in keys}
            negative = data["P_negative"] if "P_negative" in data.files else None
    except FileNotFoundError:
        raise InputError(path_npz, "file not found; run the prototype step first") from None
    except (OSError, ValueError) as exc:
        raise InputError(path_npz, f"cannot read as .npz ({exc})") from None
    return Prototypes(P=arrays["P"], mean_relevance=arrays["mean_relevance"], counts=arrays["counts"],
                      freqs_hz=arrays["freqs_hz"], classes=tuple(str(c) for c in arrays["classes"]),
                      provenance=json.loads(str(arrays["provenance"])), P_negative=negative)
