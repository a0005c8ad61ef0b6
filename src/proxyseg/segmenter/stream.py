"""Bounded-memory building blocks for long recordings: audio read in pieces, spectrogram frames of a
range, and a sliding-window average that emits finished frames as it goes.

Every function here gives the same numbers as its whole-file counterpart (``load_audio``,
``log_power_spectrogram``, :func:`proxyseg.teacher.dump.sliding_window_average`): same windows, same
order of additions; only the memory held at a time differs (tests/segmenter/test_segmenter.py checks this).
"""

from __future__ import annotations

import math
import os
from typing import Callable

import numpy as np
import soundfile as sf
import torch

from proxyseg.core.errors import InputError
from proxyseg.core.frames import HOP, SAMPLE_RATE, WIN, num_frames
from proxyseg.core.audio import check_finite, resample
from proxyseg.dictionary.spectrogram import block_powers
from proxyseg.dsp import frame_layout
from proxyseg.core import aggregate as agg
from proxyseg.teacher.dump import window_starts

__all__ = ["AudioReader", "spectrogram_range", "stream_window_average"]


class AudioReader:
    """Mono 16 kHz samples of any range of a file, read from disk on demand (zeros outside the file).

    Files at another rate are resampled piece by piece with a margin of ``margin_seconds`` on each side
    (cropped afterwards), so pieces match a whole-file resampling away from the file's ends.
    """

    def __init__(self, path: str | os.PathLike, margin_seconds: float = 0.1):
        self.path = str(path)
        try:
            info = sf.info(self.path)
        except Exception as exc:  # soundfile raises several types
            raise InputError(path, f"cannot read audio ({exc}); check the file exists and is WAV/FLAC/OGG") from exc
        self.sr = int(info.samplerate)
        self.channels = int(info.channels)
        self.native_frames = int(info.frames)
        #: samples at 16 kHz (docs/outputs.md: ``ceil(frames * 16000 / sr)``)
        self.num_samples = int(math.ceil(self.native_frames * SAMPLE_RATE / self.sr))
        self.num_frames = num_frames(self.num_samples)
        self.duration = self.native_frames / self.sr
        self.margin = int(round(margin_seconds * self.sr))

    def _native(self, first: int, last: int) -> np.ndarray:
        first, last = max(0, first), min(self.native_frames, last)
        if last <= first:
            return np.zeros(0, dtype=np.float32)
        try:
            with sf.SoundFile(self.path) as f:
                f.seek(first)
                data = f.read(last - first, dtype="float32", always_2d=True)
        except Exception as exc:
            raise InputError(self.path, f"cannot read audio ({exc})") from exc
        check_finite(data, self.path, first, self.sr)
        return data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]

    def read(self, start: int, end: int) -> np.ndarray:
        """Samples ``[start, end)`` at 16 kHz as float32; indices outside ``[0, num_samples)`` give zeros."""
        out = np.zeros(max(0, end - start), dtype=np.float32)
        lo, hi = max(0, start), min(self.num_samples, end)
        if hi <= lo:
            return out
        if self.sr == SAMPLE_RATE:
            piece = self._native(lo, hi)
        else:
            # native range covering [lo, hi) plus a margin, resampled, then cropped
            # start on a native sample that falls exactly on a 16 kHz sample, so the output grid is the
            # whole file's: a multiple of sr / gcd(sr, 16000)
            unit = self.sr // math.gcd(self.sr, SAMPLE_RATE)
            n_lo = max(0, int(math.floor(lo * self.sr / SAMPLE_RATE)) - self.margin) // unit * unit
            n_hi = min(self.native_frames, int(math.ceil(hi * self.sr / SAMPLE_RATE)) + self.margin)
            res = resample(np.ascontiguousarray(self._native(n_lo, n_hi)), self.sr, SAMPLE_RATE)
            offset = n_lo // unit * (SAMPLE_RATE // math.gcd(self.sr, SAMPLE_RATE))
            piece = res[lo - offset:hi - offset]
        out[lo - start:lo - start + len(piece)] = piece
        return out

    def block_powers(self, blocks_per_read: int = 8192) -> np.ndarray:
        """:func:`proxyseg.dictionary.spectrogram.block_powers` of the whole file, read a piece at a time."""
        step = HOP * blocks_per_read
        n = self.num_samples // HOP * HOP
        return np.concatenate([block_powers(self.read(a, min(n, a + step))) for a in range(0, n, step)]
                              or [np.zeros(0)])


def spectrogram_range(read: Callable[[int, int], np.ndarray], first: int, last: int, n_fft: int = 512,
                      win_length: int = 400) -> np.ndarray:
    """Frames ``[first, last)`` of ``X = log(1 + |STFT|^2)`` as ``(last - first, F)`` float32, reading only
    the samples they need; equal to the same rows of :func:`proxyseg.dictionary.spectrogram.log_power_spectrogram`
    of the whole file (``read`` must return zeros outside the file, as :class:`AudioReader` does)."""
    if last <= first:
        return np.zeros((0, n_fft // 2 + 1), dtype=np.float32)
    _, pad_left, _ = frame_layout(WIN, n_fft, win_length)
    start = HOP * first - pad_left
    samples = torch.from_numpy(read(start, start + HOP * (last - first - 1) + n_fft))
    window = torch.hann_window(win_length, periodic=True, dtype=samples.dtype)
    spec = torch.stft(samples, n_fft=n_fft, hop_length=HOP, win_length=win_length, window=window, center=False,
                      onesided=True, normalized=False, return_complex=True)
    return torch.log1p(spec.real.square() + spec.imag.square()).T.numpy().astype(np.float32)


@torch.no_grad()
def stream_window_average(forward: Callable[[torch.Tensor], tuple[torch.Tensor, ...]],
                          read: Callable[[int, int], np.ndarray], num_frames_: int, window: int, step: int,
                          write: Callable[[int, int, list[np.ndarray]], None], batch_size: int = 16,
                          device: torch.device | str = "cpu", progress: Callable[[int], None] | None = None,
                          aggregate: str = agg.DEFAULT, logits_first: bool = True) -> int:
    """Sliding windows over a long input, overlapping outputs aggregated per frame, finished frames handed to
    ``write(first, last, [avg_output_0 (n, C0), ...])`` in order; returns the number of windows.

    Outputs are weighted per window frame as ``aggregate`` says (:mod:`proxyseg.core.aggregate`); when
    ``logits_first``, output 0 holds logits and is aggregated as probabilities (or logits) and handed back
    as logits, like :func:`~proxyseg.teacher.dump.sliding_window_average` does.

    ``read(a, b)`` returns input frames ``[a, b)`` as ``(n, C)`` (n may be short at the end of the file).
    ``forward`` maps ``(B, C, window)`` to a tuple of ``(B, C_i, window)`` tensors. Windows are those of
    :func:`proxyseg.teacher.dump.window_starts` and sums are accumulated in the same order as
    :func:`~proxyseg.teacher.dump.sliding_window_average` (first output in float64, the others in
    float32), so results are the same; memory holds one batch span, not the file.
    """
    device = torch.device(device)
    starts = window_starts(num_frames_, window, step)
    if not starts:
        return 0
    weights = agg.window_weights(window, aggregate)
    sums: list[np.ndarray] | None = None
    base = 0  # file frame of sums[...][0]
    counts = np.zeros(0, dtype=np.float64)
    done = 0  # frames [0, done) have been written
    for b in range(0, len(starts), batch_size):
        batch = starts[b:b + batch_size]
        lo, hi = batch[0], batch[-1] + window
        block = np.asarray(read(lo, min(hi, num_frames_)), dtype=np.float32)
        if block.shape[0] < hi - lo:
            pad = np.zeros((hi - lo - block.shape[0], *block.shape[1:]), dtype=np.float32)
            block = np.concatenate([block, pad], axis=0)
        x = torch.from_numpy(block).unsqueeze(0).to(device).transpose(1, 2)
        outs = forward(torch.stack([x[0, :, s - lo:s - lo + window] for s in batch]))
        outs = [o.float().cpu().numpy() for o in outs]
        need = min(hi, num_frames_) - base
        if sums is None:
            sums = [np.zeros((need, o.shape[1]), dtype=np.float64 if i == 0 else np.float32)
                    for i, o in enumerate(outs)]
            counts = np.zeros(need, dtype=np.float64)
        elif need > counts.shape[0]:
            grow = need - counts.shape[0]
            sums = [np.concatenate([s, np.zeros((grow, s.shape[1]), dtype=s.dtype)]) for s in sums]
            counts = np.concatenate([counts, np.zeros(grow)])
        for i, s in enumerate(batch):
            e = min(s + window, num_frames_)
            w = weights[:e - s, None]
            for j, (acc, o) in enumerate(zip(sums, outs)):
                if j == 0:
                    v = o[i, :, :e - s].T
                    acc[s - base:e - base] += (agg.summand(v, aggregate) if logits_first else v) * w
                else:
                    acc[s - base:e - base] += o[i, :, :e - s].T * w.astype(np.float32)
            counts[s - base:e - base] += w[:, 0]
        # frames before the next window's start are final
        final = starts[b + batch_size] if b + batch_size < len(starts) else num_frames_
        if final > done:
            n = final - base
            c = counts[:n, None]
            first = sums[0][:n] / c
            first = agg.finish(first, aggregate) if logits_first else first.astype(np.float32)
            avg = [first] + [acc[:n] / c.astype(np.float32) for acc in sums[1:]]
            write(done, final, avg)
            if progress is not None:
                progress(final - done)
            sums = [acc[n:] for acc in sums]
            counts = counts[n:]
            base = done = final
    return len(starts)
