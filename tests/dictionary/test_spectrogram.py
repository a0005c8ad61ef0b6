import numpy as np
import pytest
import torch

from proxyseg.core.frames import HOP, WIN, num_frames
from proxyseg.dictionary.spectrogram import frame_layout, istft, log_power_spectrogram, stft, stft_frequencies

SETTINGS = [(512, 400), (1024, 1024)]


@pytest.mark.parametrize("n_fft,win", SETTINGS)
@pytest.mark.parametrize("N", [0, 399, 400, 719, 720, 721, 16000, 16001, 48123])
def test_frame_count_matches_wavlm(n_fft, win, N):
    X = log_power_spectrogram(torch.zeros(N), n_fft=n_fft, win_length=win)
    assert X.shape == (n_fft // 2 + 1, num_frames(N))
    assert X.dtype == torch.float32


@pytest.mark.parametrize("n_fft,win", SETTINGS)
def test_impulse_peaks_in_its_frame(n_fft, win):
    N = 16000
    T = num_frames(N)
    for i in [0, 1, 7, T // 2, T - 1]:
        x = np.zeros(N, dtype=np.float32)
        x[HOP * i + WIN // 2] = 1.0
        X = log_power_spectrogram(x, n_fft=n_fft, win_length=win)
        energy = X.sum(0)
        assert int(energy.argmax()) == i
        # the window peaks (value 1) exactly on the frame centre: |STFT|^2 = 1 in every bin
        assert torch.allclose(X[:, i], torch.full_like(X[:, i], np.log(2.0)), atol=1e-5)


def test_matches_explicit_framing():
    """Frame i = periodic Hann(400) * x[320 i : 320 i + 400], zero-padded to 512 with 56 zeros each side."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(5000).astype(np.float64)
    X = log_power_spectrogram(x).numpy()
    T = num_frames(len(x))
    n = np.arange(400)
    w = 0.5 * (1 - np.cos(2 * np.pi * n / 400))
    ref = np.empty((257, T))
    for i in range(T):
        frame = np.zeros(512)
        frame[56:456] = w * x[320 * i: 320 * i + 400]
        ref[:, i] = np.log1p(np.abs(np.fft.rfft(frame)) ** 2)
    np.testing.assert_allclose(X, ref, rtol=1e-9, atol=1e-9)
    assert frame_layout(len(x))[1] == 56


def test_batched_equals_single():
    x = torch.randn(3, 9000)
    X = log_power_spectrogram(x)
    assert X.shape == (3, 257, num_frames(9000))
    for b in range(3):
        assert torch.allclose(X[b], log_power_spectrogram(x[b]), atol=1e-5)
    S = stft(x)
    assert S.shape == (3, 257, num_frames(9000)) and S.is_complex()


def test_dtypes_and_numpy_input():
    x = np.random.default_rng(1).standard_normal(2000)
    assert stft(x).dtype == torch.complex128  # float64 array -> complex128
    assert stft(x.astype(np.float32)).dtype == torch.complex64
    assert log_power_spectrogram((x * 1000).astype(np.int16)).dtype == torch.float32


def test_frequencies():
    f = stft_frequencies(512)
    assert f.shape == (257,)
    assert f[0] == 0.0 and f[-1] == 8000.0
    np.testing.assert_allclose(np.diff(f), 31.25)
    assert stft_frequencies(1024, sr=16000)[1] == 15.625


@pytest.mark.parametrize("n_fft,win", SETTINGS)
def test_istft_round_trip(n_fft, win):
    torch.manual_seed(0)
    N = 16000 * 2 + 77
    x = torch.randn(N)
    y = istft(stft(x, n_fft, win), N, n_fft, win)
    assert y.shape == (N,)
    T = num_frames(N)
    end = HOP * (T - 1) + WIN  # region covered by WavLM's frames
    edge = 25  # the Hann window is < sqrt(1e-3) there: faded (see istft's docstring), not amplified
    err = (y - x)[edge:end - edge].abs().max().item()
    assert err < 1e-4
    if win == 400:
        assert y[end:].abs().max().item() == 0.0  # not covered by any window
    # faded edges stay bounded by the signal
    assert (y[:edge].abs() <= x[:edge].abs() + 1e-4).all()


def test_istft_batched_and_masked_is_bounded():
    torch.manual_seed(1)
    x = torch.randn(2, 8000)
    S = stft(x)
    y = istft(S, 8000)
    assert y.shape == (2, 8000)
    assert torch.allclose(y[:, 25:7700], x[:, 25:7700], atol=1e-4)
    # a masked magnitude with the original phase stays a sane signal (no blow-up near the edges)
    mask = (torch.rand(S.shape) > 0.5).float()
    z = istft(S * mask, 8000)
    assert torch.isfinite(z).all()
    assert z.abs().max() < 50 * x.abs().max()
