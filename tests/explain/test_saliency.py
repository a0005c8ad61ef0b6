"""Teacher saliency over frequency, its comparison with prototypes, and listenable local explanations."""

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from proxyseg.explain import relevance as ex
from proxyseg.features.demo_wavlm import build_untrained_wavlm
from proxyseg.features.wavlm import load_wavlm
from proxyseg.core.frames import CLASSES
from proxyseg.explain.prototypes import write_listenable
from proxyseg.explain.saliency import band_sums, compare_rows, log_bands, segment_saliency
from proxyseg.dsp import stft_frequencies
from proxyseg.teacher.model import Teacher


def test_log_bands_cover_the_spectrum_once():
    freqs = stft_frequencies(512)
    bands = log_bands(16)
    assert len(bands) == 16 and bands[0] == (0.0, 100.0) and bands[-1][1] == pytest.approx(8000.0)
    assert band_sums(np.ones_like(freqs), freqs, bands).sum() == len(freqs)


def test_segment_saliency_profile(tmp_path):
    build_untrained_wavlm(tmp_path / "w", seed=0, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                          intermediate_size=64, conv_dim=(32,) * 7)
    wavlm = load_wavlm(str(tmp_path / "w"))
    torch.manual_seed(0)
    teacher = Teacher(3, 32, blocks=1, repeats=1).eval()
    t = np.arange(16000) / 16000
    x = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    signed, prof = segment_saliency(x, wavlm, teacher, [0, 1, 2], c=0)
    assert prof.shape == signed.shape == (257,) and (prof >= 0).all() and prof.sum() == pytest.approx(1.0)
    assert (signed >= 0).all() and signed.sum() == pytest.approx(1.0)  # evidence for the class only
    # gradient x input: bins with no energy carry (almost) no saliency
    assert prof[np.argmin(np.abs(stft_frequencies(512) - 440))] > prof[-20:].max()
    # the signed map keeps the sign: bins that speak against the class get no share of the signed profile
    assert not np.allclose(signed, prof)
    assert all(p.grad is None for p in wavlm.parameters())  # the models stay frozen


def _prototypes(tmp_path, P, counts=(5, 5, 5, 0)):
    freqs = stft_frequencies(512)
    ex.save_prototypes(tmp_path / "proto.npz", P, np.zeros((8, 4)), np.array(counts), freqs, "{}")
    return tmp_path / "proto.npz"


def test_compare_rows_rank_correlation(tmp_path):
    freqs = stft_frequencies(512)
    rising = np.linspace(0.1, 1.0, 257)
    sal = np.stack([rising, rising, rising[::-1], rising], axis=1)
    np.savez(tmp_path / "sal.npz", profiles=sal, counts=np.array([3, 3, 3, 3]), freqs_hz=freqs)
    P = np.stack([rising, rising[::-1], rising[::-1], rising], axis=1)
    rows = compare_rows("p", tmp_path / "sal.npz", _prototypes(tmp_path, P), num_bands=8).set_index("class")
    assert rows.loc["speech", "spearman_rho"] == pytest.approx(1.0)
    assert rows.loc["music", "spearman_rho"] == pytest.approx(1.0)
    assert rows.loc["noise", "spearman_rho"] == pytest.approx(-1.0)  # rising vs falling
    assert rows.loc["speech", "saliency_peak_band_hz"] == rows.loc["speech", "prototype_peak_band_hz"]
    # control: speech saliency (rising) against noise's (falling) and music's (falling) prototypes
    assert rows.loc["speech", "rho_other_classes"] == pytest.approx(-1.0)
    assert np.isnan(rows.loc["overlap", "spearman_rho"])  # no prototype segment for overlap
    assert isinstance(rows, pd.DataFrame) and list(rows.index) == list(CLASSES)


def test_listenable_explanation_and_residual_add_up(tmp_path):
    rng = np.random.default_rng(0)
    t = np.arange(8000) / 16000
    x = (0.3 * np.sin(2 * np.pi * 300 * t) + 0.05 * rng.normal(size=t.size)).astype(np.float32)
    X = ex._np(__import__("proxyseg.dictionary.spectrogram", fromlist=["x"]).log_power_spectrogram(x), "X")
    W = rng.random((257, 5))
    W /= np.linalg.norm(W, axis=0)
    H = rng.random((5, X.shape[1]))
    residual = write_listenable(tmp_path / "speech_0.wav", x, W, H, [0, 2], 512, 400)
    a, sr = sf.read(tmp_path / "speech_0.wav")
    b, _ = sf.read(residual)
    assert sr == 16000 and len(a) == len(b) == len(x) and residual.name == "speech_0_residual.wav"
    # the two masks add up to one, so explanation + residual is the signal (16-bit WAVs, faded edges)
    np.testing.assert_allclose((a + b)[400:-400], x[400:-400], atol=2e-4)
    assert 0 < np.abs(a).max() and 0 < np.abs(b).max()
