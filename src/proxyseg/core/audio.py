"""Audio in: any soundfile-readable file, down-mixed to mono and resampled to 16 kHz."""

from __future__ import annotations

import os

import numpy as np
import soundfile as sf

from proxyseg.core.errors import InputError
from proxyseg.core.frames import SAMPLE_RATE


#: samples read at a time by :func:`check_samples`
CHECK_BLOCK = 1 << 20


def check_finite(data: np.ndarray, path: str | os.PathLike, first: int, sample_rate: int) -> None:
    """Refuse NaN or infinite samples (``data`` read from ``path`` from native sample ``first`` on).

    Unchecked, they flow into spectrograms and features, and NMF or training fail later naming no file.
    """
    bad = ~np.isfinite(data).reshape(len(data), -1).all(axis=1)  # per sample, any channel
    if bad.any():
        at = (first + int(np.argmax(bad))) / sample_rate
        raise InputError(path, f"sample at {at:.3f} s is NaN or infinite (a float file written from broken "
                               "data?); repair the file, or drop it from the corpus or the batch")


def check_samples(path: str | os.PathLike) -> None:
    """Read every sample of a float-coded file to refuse NaN/inf (:func:`check_finite`), a block at a time.

    Integer-coded audio (PCM WAV, FLAC, ...) cannot hold them and is not read.
    """
    try:
        with sf.SoundFile(str(path)) as f:
            if f.subtype.startswith(("PCM_", "ULAW", "ALAW")):
                return
            first = 0
            while True:
                data = f.read(CHECK_BLOCK, dtype="float32", always_2d=True)
                if not len(data):
                    break
                check_finite(data, path, first, f.samplerate)
                first += len(data)
    except InputError:
        raise
    except Exception as exc:  # soundfile raises several types
        raise InputError(path, f"cannot read audio ({exc}); check the file exists and is WAV/FLAC/OGG") from exc


def audio_info(path: str | os.PathLike, samples: bool = False) -> tuple[float, int, int]:
    """(duration in seconds, sample rate, channels) without reading the samples, unless ``samples``: then
    every sample is checked to be finite too (:func:`check_samples`)."""
    try:
        info = sf.info(str(path))
    except Exception as exc:  # soundfile raises several types (LibsndfileError, RuntimeError, ...)
        raise InputError(path, f"cannot read audio ({exc}); check the file exists and is WAV/FLAC/OGG") from exc
    if samples:
        check_samples(path)
    return info.frames / info.samplerate, info.samplerate, info.channels


def resample(samples: np.ndarray, orig_sr: int, target_sr: int = SAMPLE_RATE) -> np.ndarray:
    """Band-limited resampling of a 1-D float32 signal (torchaudio's windowed-sinc)."""
    if orig_sr == target_sr:
        return samples
    import torch
    import torchaudio.functional as AF

    out = AF.resample(torch.from_numpy(np.ascontiguousarray(samples)), orig_sr, target_sr)
    return out.numpy()


def load_audio(path: str | os.PathLike, start: float = 0.0, end: float | None = None) -> np.ndarray:
    """Mono float32 samples at 16 kHz of ``path`` between ``start`` and ``end`` seconds."""
    try:
        with sf.SoundFile(str(path)) as f:
            sr = f.samplerate
            first = int(round(start * sr))
            last = f.frames if end is None else min(f.frames, int(round(end * sr)))
            f.seek(first)
            data = f.read(max(0, last - first), dtype="float32", always_2d=True)
    except Exception as exc:
        raise InputError(path, f"cannot read audio ({exc}); check the file exists and is WAV/FLAC/OGG") from exc
    check_finite(data, path, first, sr)
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    return resample(mono.astype(np.float32, copy=False), sr).astype(np.float32, copy=False)
