import os

import numpy as np
import pytest
import soundfile as sf

os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture
def write_wav(tmp_path):
    """Write a noise WAV of ``seconds`` at ``sr`` Hz with ``channels`` channels; returns its path."""

    def _write(name, seconds=2.0, sr=16000, channels=1, seed=0):
        rng = np.random.default_rng(seed)
        data = (0.1 * rng.standard_normal((int(seconds * sr), channels))).astype(np.float32)
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, data, sr)
        return path

    return _write
