"""The complex STFT on WavLM's frame grid, its inverse and its frequency axis: plain DSP shared by the
spectrogram cache, the demo WavLM's pre-training, the explanations and the segment report (it lives
below every stage so none of them imports another stage for it).

Framing (the one choice every function here shares)
---------------------------------------------------
WavLM frame ``i`` covers samples ``[hop*i, hop*i + 400)`` (``proxyseg.core.frames``: hop 320, window 400), so
its centre is sample ``hop*i + 200``. Here frame ``i`` is an ``n_fft``-sample frame whose analysis window
(a periodic Hann window of ``win_length`` samples, zero-padded to ``n_fft`` *centred*, as ``torch.stft``
does) has its peak on that same sample ``hop*i + 200``:

* the Hann window's peak is its sample ``win_length // 2``, which sits at offset
  ``off = (n_fft - win_length) // 2 + win_length // 2`` inside the ``n_fft`` frame;
* so frame ``i`` starts at signal sample ``hop*i + 200 - off``. The signal is **left-padded with
  ``off - 200`` zeros** (56 for the default 400/512, 312 for 1024/1024; a negative value crops) and
  right-padded with zeros (or cropped) to exactly ``hop*(T-1) + n_fft`` samples.

With the default ``win_length=400`` the window covers exactly WavLM's samples ``[hop*i, hop*i+400)``; a
longer window (e.g. 1024/1024) is centred on the same sample and reaches past both ends of the signal,
where it sees zeros. The number of frames is WavLM's, ``T = (N - 400) // hop + 1`` (0 when
``N < 400``), i.e. ``proxyseg.core.frames.num_frames(N)`` for the default hop, whatever ``n_fft`` is.

Spectra are unnormalised (``|STFT|^2`` is the plain sum over the windowed frame), one-sided: F = n_fft//2+1.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as Fn

from proxyseg.core.frames import HOP, SAMPLE_RATE, WIN

__all__ = ["stft", "istft", "stft_frequencies", "frame_layout"]


def _as_tensor(samples: torch.Tensor | np.ndarray) -> torch.Tensor:
    x = torch.as_tensor(samples)
    if not (x.is_floating_point() or x.is_complex()):
        x = x.to(torch.float32)
    return x


def _check(n_fft: int, win_length: int, hop: int) -> None:
    if not (0 < win_length <= n_fft):
        raise ValueError(f"need 0 < win_length <= n_fft, got win_length={win_length}, n_fft={n_fft}")
    if hop <= 0:
        raise ValueError(f"hop must be positive, got {hop}")


def frame_layout(num_samples: int, n_fft: int = 512, win_length: int = 400, hop: int = HOP) -> tuple[int, int, int]:
    """``(T, pad_left, padded_length)`` of the framing described in the module docstring.

    ``pad_left`` zeros go before sample 0 (negative: that many samples are dropped); the padded signal
    has ``padded_length = hop*(T-1) + n_fft`` samples, so ``torch.stft(center=False)`` yields exactly T
    frames.
    """
    _check(n_fft, win_length, hop)
    T = 0 if num_samples < WIN else (num_samples - WIN) // hop + 1
    off = (n_fft - win_length) // 2 + win_length // 2
    pad_left = off - WIN // 2
    return T, pad_left, (hop * (T - 1) + n_fft) if T > 0 else 0


def _window(win_length: int, x: torch.Tensor) -> torch.Tensor:
    dtype = x.real.dtype if x.is_complex() else x.dtype
    return torch.hann_window(win_length, periodic=True, dtype=dtype, device=x.device)


def stft(samples: torch.Tensor | np.ndarray, n_fft: int = 512, win_length: int = 400,
         hop: int = HOP) -> torch.Tensor:
    """Complex STFT on WavLM's frame grid: ``(N,) -> (F, T)`` or ``(..., N) -> (..., F, T)``.

    ``F = n_fft // 2 + 1``, ``T = frames.num_frames(N)`` (default hop). Frame ``i``'s window peaks at
    sample ``hop*i + 200``. Real float input keeps its dtype (float32 -> complex64); integer input is
    cast to float32; a NumPy array becomes a CPU tensor; a tensor stays on its device.
    """
    x = _as_tensor(samples)
    if x.is_complex():
        raise TypeError("stft expects real samples")
    if x.dim() == 0:
        raise ValueError("stft expects samples of shape (N,) or (..., N)")
    lead, N = x.shape[:-1], x.shape[-1]
    T, pad_left, total = frame_layout(N, n_fft, win_length, hop)
    F = n_fft // 2 + 1
    cdtype = torch.complex128 if x.dtype == torch.float64 else torch.complex64
    if T == 0:
        return torch.zeros(*lead, F, 0, dtype=cdtype, device=x.device)
    flat = x.reshape(-1, N)
    flat = Fn.pad(flat, (pad_left, total - N - pad_left))  # negative widths crop
    spec = torch.stft(flat, n_fft=n_fft, hop_length=hop, win_length=win_length,
                      window=_window(win_length, x), center=False, onesided=True,
                      normalized=False, return_complex=True)
    assert spec.shape[-1] == T, (spec.shape, T)
    return spec.reshape(*lead, F, T).contiguous()  # torch.stft's result is stored frame-major


def istft(spec: torch.Tensor, length: int, n_fft: int = 512, win_length: int = 400, hop: int = HOP,
          floor: float = 1e-3) -> torch.Tensor:
    """Inverse of :func:`stft` (same framing): ``(..., F, T)`` complex -> ``(..., length)`` real.

    Weighted overlap-add (the least-squares inverse of Griffin & Lim): each frame is inverse-FFT'd,
    multiplied by the analysis window and overlap-added; the sum is divided by the overlap-added squared
    window ``env``. Where ``env < floor`` (default 1e-3, relative to a full window's peak of 1) the
    division uses ``floor`` instead, so a *modified* spectrogram (e.g. a masked magnitude with the original
    phase) cannot blow up where the window is nearly zero; for an unmodified STFT this only affects the
    first and last ~22 samples of the framed region (Hann 400/512), which come back faded. Everything else
    in ``[0, hop*(T-1) + 400)`` is reconstructed to float precision (for 400/512; a longer window such as
    1024/1024 covers, and reconstructs, a wider span around it). Samples no window covers are zero (also
    the gaps when ``win_length < hop``, which no inverse can fill). ``length`` is the number of samples
    returned (normally the original N).
    """
    _check(n_fft, win_length, hop)
    if not spec.is_complex():
        raise TypeError("istft expects a complex spectrogram")
    F, T = spec.shape[-2], spec.shape[-1]
    if F != n_fft // 2 + 1:
        raise ValueError(f"spectrogram has {F} bins, n_fft={n_fft} needs {n_fft // 2 + 1}")
    lead = spec.shape[:-2]
    rdtype = spec.real.dtype
    if T == 0:
        return torch.zeros(*lead, length, dtype=rdtype, device=spec.device)
    _, pad_left, _ = frame_layout(WIN + hop * (T - 1), n_fft, win_length, hop)
    total = hop * (T - 1) + n_fft
    flat = spec.reshape(-1, F, T)
    frames = torch.fft.irfft(flat, n=n_fft, dim=-2)  # (B, n_fft, T)
    win = _window(win_length, frames)
    left = (n_fft - win_length) // 2
    win_full = Fn.pad(win, (left, n_fft - win_length - left))  # (n_fft,)
    frames = frames * win_full[None, :, None]
    fold = dict(output_size=(1, total), kernel_size=(1, n_fft), stride=(1, hop))
    ola = Fn.fold(frames, **fold).reshape(flat.shape[0], total)
    env = Fn.fold(win_full.square()[None, :, None].expand(1, n_fft, T), **fold).reshape(total)
    out = ola / env.clamp_min(floor)
    # padded index p holds signal sample p - pad_left
    out = Fn.pad(out, (-pad_left, length - (total - pad_left)))
    return out.reshape(*lead, length)


def stft_frequencies(n_fft: int = 512, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Centre frequency in Hz of each of the ``n_fft // 2 + 1`` bins: ``f * sr / n_fft``."""
    return np.arange(n_fft // 2 + 1, dtype=np.float64) * sr / n_fft
