import numpy as np
import pytest
import torch

from proxyseg.core.frames import HOP, WIN, num_frames
from proxyseg.dictionary.spectrogram import block_powers, level_gain, log_power_spectrogram, scaled
from proxyseg.dsp import frame_layout, istft, stft, stft_frequencies

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


def _bursts(level_db, seconds=3.0, on=0.3, seed=0):
    """Noise bursts at ``level_db`` dBFS (mean square) for ``on`` of the time, silence between."""
    rng = np.random.default_rng(seed)
    n = int(seconds * 16000)
    x = rng.standard_normal(n) * 10 ** (level_db / 20)
    x[(np.arange(n) // 3200) % 10 >= 10 * on] = 0.0
    return x.astype(np.float32)


def test_level_gain_brings_the_loud_part_to_the_asked_level():
    """spectrogram.level_db: a file's loud part (not its silences) ends at the asked level, whatever its own."""
    for own in (-45.0, -12.0):
        x = _bursts(own)
        g = level_gain(block_powers(x), -15.0)
        assert abs(20 * np.log10(g) - (-15.0 - own)) < 1.0  # 70 % silence does not pull the level down
        loud = np.percentile(block_powers(scaled(x, g)), 95)
        assert abs(10 * np.log10(loud) + 15.0) < 1e-3
    assert level_gain(block_powers(_bursts(-30.0)), None) == 1.0  # the paper's: the raw level
    assert level_gain(block_powers(np.zeros(16000, np.float32)), -15.0) == 1.0  # silence stays silence
    assert level_gain(np.zeros(0), -15.0) == 1.0
    assert abs(20 * np.log10(level_gain(block_powers(_bursts(-90.0)), -15.0)) - 40.0) < 1e-9  # at most +40 dB
    x = _bursts(-20.0)
    assert scaled(x, 1.0) is x and scaled(x, 2.0).dtype == np.float32


def test_spectrogram_cache_at_one_level_is_blind_to_recording_gain(tmp_path):
    """With level_db a recording and a copy 25 dB softer give the proxy the same X; without, they do not."""
    import h5py
    import pandas as pd
    import soundfile as sf

    from proxyseg.dictionary.spectrogram_cache import cache_spectrograms

    x = _bursts(-20.0, seed=1)
    rows = []
    for uri, gain in (("loud", 1.0), ("soft", 10 ** (-25 / 20))):
        sf.write(str(tmp_path / f"{uri}.wav"), x * gain, 16000, subtype="FLOAT")
        rows.append({"uri": uri, "audio": str(tmp_path / f"{uri}.wav"), "num_frames": num_frames(len(x))})
    pd.DataFrame(rows).to_csv(tmp_path / "m.tsv", sep="\t", index=False)
    for level, out in ((-15.0, tmp_path / "level.h5"), (None, tmp_path / "raw.h5")):
        cache_spectrograms(tmp_path / "m.tsv", out, level_db=level)
        with h5py.File(out) as h5:
            loud, soft = h5["loud"][()].astype(np.float32), h5["soft"][()].astype(np.float32)
            gains = h5["loud"].attrs["gain"], h5["soft"].attrs["gain"]
            if level is None:
                assert gains == (1.0, 1.0) and "level_db" not in h5.attrs
                assert np.abs(loud - soft).max() > 1.0
            else:
                assert h5.attrs["level_db"] == -15.0
                assert abs(20 * np.log10(gains[1] / gains[0]) - 25.0) < 1e-3
                np.testing.assert_allclose(soft, loud, atol=0.02, rtol=0.01)  # float16, float32 rounding
