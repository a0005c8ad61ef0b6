"""Audio in: any soundfile-readable file, down-mixed to mono and resampled to 16 kHz."""

from __future__ import annotations

import os

import numpy as np
import soundfile as sf

from proxyseg.core.errors import InputError
from proxyseg.core.frames import SAMPLE_RATE


def audio_info(path: str | os.PathLike) -> tuple[float, int, int]:
    """(duration in seconds, sample rate, channels) without reading the samples."""
    try:
        info = sf.info(str(path))
    except Exception as exc:  # soundfile raises several types (LibsndfileError, RuntimeError, ...)
        raise InputError(path, f"cannot read audio ({exc}); check the file exists and is WAV/FLAC/OGG") from exc
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
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    return resample(mono.astype(np.float32, copy=False), sr).astype(np.float32, copy=False)
