"""The proxy's input: the log-power spectrogram on WavLM's frame grid, and the level of a file
(``spectrogram.level_db``) applied to its samples before it.

The framing is the STFT's, :mod:`proxyseg.dsp.stft` (frame ``i``'s window peaks on WavLM frame ``i``'s
centre). Spectra are unnormalised (``|STFT|^2`` is the plain sum over the windowed frame), one-sided:
F = n_fft//2+1.
"""

from __future__ import annotations

import numpy as np
import torch

from proxyseg.core.frames import HOP
from proxyseg.dsp import stft

__all__ = ["log_power_spectrogram", "block_powers", "level_gain", "scaled"]


def log_power_spectrogram(samples: torch.Tensor | np.ndarray, n_fft: int = 512, win_length: int = 400,
                          hop: int = HOP) -> torch.Tensor:
    """``X = log(1 + |STFT|^2)``: ``(N,) -> (F, T)``, ``(B, N) -> (B, F, T)`` (see :func:`proxyseg.dsp.stft`)."""
    spec = stft(samples, n_fft=n_fft, win_length=win_length, hop=hop)
    return torch.log1p(spec.real.square() + spec.imag.square())


#: ``level_gain``: the level of a file is the 95th percentile of its 20 ms blocks' power (its loud part,
#: not its silences); a file quieter than ``SILENT_DB`` there is left as it is, and no file is raised by
#: more than ``MAX_GAIN_DB`` (dither or hiss is not made into a loud signal).
LEVEL_PERCENTILE = 95.0
SILENT_DB = -100.0
MAX_GAIN_DB = 40.0


def block_powers(samples: np.ndarray, hop: int = HOP) -> np.ndarray:
    """Mean square (float64) of each whole ``hop``-sample block from sample 0 (a trailing partial block is
    left out). Blocks are independent, so a file read in pieces of whole blocks gives the same array."""
    x = np.asarray(samples)
    n = x.shape[0] // hop * hop
    return np.square(x[:n].astype(np.float64)).reshape(-1, hop).mean(axis=1)


def level_gain(powers: np.ndarray, level_db: float | None) -> float:
    """Amplitude gain that brings a file whose :func:`block_powers` are ``powers`` to ``level_db`` dBFS
    (``spectrogram.level_db``): 1.0 when ``level_db`` is None (the raw level, the paper's), the file is
    empty or silent. Applied to the samples before the proxy's spectrogram, so the proxy sees every file at
    one level, whatever its recording gain (the black box always hears the raw audio)."""
    p = np.asarray(powers, dtype=np.float64)
    if level_db is None or p.size == 0:
        return 1.0
    loud = float(np.percentile(p, LEVEL_PERCENTILE))
    if loud <= 10.0 ** (SILENT_DB / 10.0):
        return 1.0
    return float(10.0 ** (min(float(level_db) - 10.0 * np.log10(loud), MAX_GAIN_DB) / 20.0))


def scaled(samples: np.ndarray, gain: float) -> np.ndarray:
    """``samples * gain`` in float32, the one way every stage applies a file's gain (bit-identical
    whether a file is read whole or in pieces); ``samples`` itself when the gain is 1."""
    x = np.asarray(samples, dtype=np.float32)
    return x if gain == 1.0 else x * np.float32(gain)
