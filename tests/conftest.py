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


@pytest.fixture
def narrowband_dictionary():
    """W (257, K) of unit-norm Gaussian bumps (60 Hz wide) at ``centres`` Hz, for hand-built proxies."""
    from proxyseg.spectrogram import stft_frequencies

    def _make(centres):
        freqs = stft_frequencies(512)
        W = np.stack([np.exp(-0.5 * ((freqs - f) / 60.0) ** 2) + 1e-4 for f in centres], axis=1).astype(np.float32)
        return W / np.linalg.norm(W, axis=0, keepdims=True)

    return _make


@pytest.fixture
def linear_proxy():
    """Save a spectrogram-input proxy with dictionary W (fixed) and a hand-set read-out: ``weights`` maps a
    class index to (atoms, value) pairs, the other weights are 0 and the biases -1; returns the path."""
    import torch

    from proxyseg.proxy.model import Proxy

    def _save(path, W, weights):
        torch.manual_seed(0)
        model = Proxy(W.shape[0], torch.from_numpy(W), "fixed", blocks=1, repeats=1)
        with torch.no_grad():
            model.theta.weight.zero_()
            for c, pairs in weights.items():
                for atoms, value in pairs:
                    model.theta.weight[c, atoms, 0] = value
            model.theta.bias.fill_(-1.0)
        hp = {**model.hparams, "crop_frames": 50, "input": "spectrogram", "dictionary": "fixed"}
        torch.save({"state_dict": model.state_dict(), "hparams": hp}, path)
        return path

    return _save
