"""Signal synthesis for the demo corpora: speech-like voices, music and noise textures.

Everything is mono float64 at 16 kHz and vectorised with numpy (loops run over syllables, notes or
events, never over samples). Every function draws from the ``np.random.Generator`` it is given, so a
file's content depends only on its own seed. Time-varying filters (formants, fricatives, wind) are
applied in the STFT domain: one multiplication per frame instead of a per-sample recursion.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import signal as sps

SR = 16000
_NYQ_SAFE = 7600.0  # highest partial we synthesise (below 8 kHz, so no aliasing)

# ---------------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------------

_NFFT = 512
_SHOP = 256  # hop N/2 with sqrt-Hann analysis and synthesis windows: their product sums to 1 everywhere
_WIN = np.sqrt(0.5 - 0.5 * np.cos(2 * np.pi * np.arange(_NFFT) / _NFFT))
FREQS = np.fft.rfftfreq(_NFFT, 1 / SR)


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x)) + 1e-20)) if len(x) else 1e-10


def unit_rms(x: np.ndarray) -> np.ndarray:
    return x / rms(x)


def db(gain_db: float) -> float:
    return float(10.0 ** (gain_db / 20.0))


def stft(x: np.ndarray) -> np.ndarray:
    xp = np.pad(np.asarray(x, dtype=np.float64), (_NFFT, _NFFT))
    frames = sliding_window_view(xp, _NFFT)[::_SHOP]
    return np.fft.rfft(frames * _WIN, axis=1)


def stft_times(n_frames: int) -> np.ndarray:
    """Centre time (s) of each STFT frame, matching ``stft``'s padding."""
    return (np.arange(n_frames) * _SHOP + _NFFT // 2 - _NFFT) / SR


def istft(spec: np.ndarray, n: int) -> np.ndarray:
    frames = np.fft.irfft(spec, _NFFT, axis=1) * _WIN
    count = len(frames)
    out = np.zeros((count + 1) * _SHOP)
    for j in range(_NFFT // _SHOP):  # overlap-add: each half of every frame lands on its own hop
        out[j * _SHOP: j * _SHOP + count * _SHOP] += frames[:, j * _SHOP:(j + 1) * _SHOP].reshape(-1)
    return out[_NFFT:_NFFT + n]


def filter_frames(x: np.ndarray, gain_fn) -> np.ndarray:
    """Time-varying filter: ``gain_fn(frame_times)`` returns a (frames, bins) magnitude response."""
    spec = stft(x)
    spec *= gain_fn(stft_times(len(spec)))
    return istft(spec, len(x))


def smooth_noise(rng: np.random.Generator, n: int, rate_hz: float) -> np.ndarray:
    """Slowly varying zero-mean unit-variance-ish signal (random knots at ``rate_hz``, linear)."""
    knots = rng.standard_normal(max(2, int(n / SR * rate_hz) + 2))
    return np.interp(np.arange(n), np.linspace(0, n - 1, len(knots)), knots)


def ramp_window(n: int, attack: int, release: int) -> np.ndarray:
    """Raised-cosine attack and release around a flat top (lengths in samples, clipped to ``n``)."""
    w = np.ones(n)
    a = min(attack, n // 2)
    r = min(release, n - a)
    if a > 0:
        w[:a] = 0.5 - 0.5 * np.cos(np.pi * (np.arange(a) + 0.5) / a)
    if r > 0:
        w[n - r:] = 0.5 + 0.5 * np.cos(np.pi * (np.arange(r) + 0.5) / r)
    return w


def fade(x: np.ndarray, seconds: float = 0.02) -> np.ndarray:
    return x * ramp_window(len(x), int(seconds * SR), int(seconds * SR))


def colored_noise(rng: np.random.Generator, n: int, alpha: float) -> np.ndarray:
    """Noise with power spectrum ~ 1 / f**alpha (0 white, 1 pink, 2 brown), unit RMS."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / SR)
    spec *= np.maximum(f, 20.0) ** (-alpha / 2)
    return unit_rms(np.fft.irfft(spec, n))


@functools.lru_cache(maxsize=4096)
def _sos_cached(kind: str, freq, order: int):
    return sps.butter(order, list(freq) if isinstance(freq, tuple) else freq, btype=kind, fs=SR, output="sos")


def _sos(kind: str, freq, order: int = 4):
    """Butterworth design, cached: frequencies are rounded to 1 Hz so repeated designs are free."""
    key = tuple(float(round(f)) for f in freq) if isinstance(freq, (list, tuple)) else float(round(freq))
    return _sos_cached(kind, key, order)


def bandpass(x: np.ndarray, lo: float, hi: float, order: int = 4) -> np.ndarray:
    return sps.sosfilt(_sos("bandpass", (lo, min(hi, 7900.0)), order), x)


_TABLE = 4096


def wavetable(cycles: np.ndarray, amps: np.ndarray, ratios: np.ndarray | None = None,
              phases: np.ndarray | None = None) -> np.ndarray:
    """Sum of harmonics ``amps[k] * sin(2 pi (k+1) cycles + phases[k])`` in O(n), by table lookup.

    ``cycles`` is the running phase in periods (cumulative f0 / SR), so vibrato and drift come for free.
    """
    k = np.arange(1, len(amps) + 1) if ratios is None else np.asarray(ratios)
    ph = np.zeros(len(amps)) if phases is None else phases
    grid = np.arange(_TABLE + 1) / _TABLE
    # einsum, not BLAS: its summation order does not depend on thread count, so output is reproducible
    table = np.einsum("ik,k->i", np.sin(2 * np.pi * grid[:, None] * k[None, :] + ph[None, :]), np.asarray(amps, float))
    pos = (cycles % 1.0) * _TABLE
    i = pos.astype(np.int64)
    frac = pos - i
    return table[i] * (1 - frac) + table[i + 1] * frac


def lowpass(x: np.ndarray, fc: float, order: int = 4) -> np.ndarray:
    return sps.sosfilt(_sos("lowpass", fc, order), x)


def highpass(x: np.ndarray, fc: float, order: int = 4) -> np.ndarray:
    return sps.sosfilt(_sos("highpass", fc, order), x)


def reverb_ir(rng: np.random.Generator, rt60: float, wet: float) -> np.ndarray:
    """Direct path plus a few early reflections and an exponentially decaying diffuse tail."""
    n = max(16, int(rt60 * SR))
    t = np.arange(n) / SR
    tail = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)
    tail = lowpass(tail, rng.uniform(3000, 6000), order=2)
    tail[: int(0.005 * SR)] = 0.0
    for _ in range(rng.integers(3, 7)):
        tail[rng.integers(int(0.003 * SR), max(int(0.004 * SR), min(n, int(0.05 * SR))))] += rng.uniform(-1, 1) * 3
    ir = wet * tail / np.sqrt(np.sum(tail ** 2))
    ir[0] += 1.0
    return ir


def convolve_same(x: np.ndarray, ir: np.ndarray) -> np.ndarray:
    return sps.oaconvolve(x, ir)[: len(x)]


# ---------------------------------------------------------------------------------------------------
# Speech
# ---------------------------------------------------------------------------------------------------

# F1-F3 targets (Hz) of an adult male voice for ten vowel qualities (Peterson & Barney-like).
_VOWELS = np.array([
    [270, 2290, 3010], [390, 1990, 2550], [530, 1840, 2480], [660, 1720, 2410], [730, 1090, 2440],
    [570, 840, 2410], [440, 1020, 2240], [300, 870, 2240], [490, 1350, 1690], [520, 1190, 2390],
], dtype=float)
# F2 loci of consonant places (labial, alveolar, post-alveolar, velar) and their fricative noise bands.
_PLACES = {
    "lab": dict(locus=(300, 900, 2200), fc=3500.0, bw=3000.0, amp=0.12),
    "alv": dict(locus=(300, 1700, 2600), fc=5800.0, bw=900.0, amp=0.35),
    "pal": dict(locus=(300, 2000, 2500), fc=3000.0, bw=600.0, amp=0.35),
    "vel": dict(locus=(300, 2100, 2400), fc=2200.0, bw=500.0, amp=0.25),
}
_PLACE_NAMES = tuple(_PLACES)
_NASAL = (260.0, 1150.0, 2300.0)


@dataclass(frozen=True)
class Voice:
    """What makes speakers sound different: pitch, vocal-tract length, rate, timbre."""

    f0: float              # base pitch (Hz)
    f0_range: float        # pitch excursion (semitones)
    formant_scale: float   # shorter vocal tract -> higher formants
    rate: float            # syllables per second
    tilt: float            # spectral tilt (dB per octave above 500 Hz)
    breath: float          # aspiration noise in the voiced source
    jitter: float          # relative f0 perturbation
    open_quotient: float   # glottal open phase (breathier when larger)
    fric_scale: float      # fricative noise band scaling
    bw_scale: float        # formant bandwidth scaling


def random_voices(rng: np.random.Generator, count: int) -> list[Voice]:
    """``count`` voices whose pitches fall in different strata, so speakers are distinguishable."""
    lo, hi = np.log(85.0), np.log(260.0)
    edges = np.linspace(lo, hi, count + 1)
    order = rng.permutation(count)
    voices = []
    for k in range(count):
        f0 = float(np.exp(rng.uniform(edges[order[k]], edges[order[k] + 1])))
        high = (np.log(f0) - lo) / (hi - lo)
        voices.append(Voice(
            f0=f0,
            f0_range=float(rng.uniform(2.0, 6.0)),
            formant_scale=float(np.clip(0.9 + 0.25 * high + rng.normal(0, 0.035), 0.85, 1.22)),
            rate=float(rng.uniform(3.2, 6.0)),
            tilt=float(rng.uniform(-4.0, 1.5)),
            breath=float(rng.uniform(0.02, 0.2) * (1 + high)),
            jitter=float(rng.uniform(0.004, 0.02)),
            open_quotient=float(rng.uniform(0.45, 0.75)),
            fric_scale=float(rng.uniform(0.85, 1.15)),
            bw_scale=float(rng.uniform(0.8, 1.5)),
        ))
    return voices


def _glottal(rng: np.random.Generator, f0: np.ndarray, voice: Voice) -> tuple[np.ndarray, np.ndarray]:
    """Rosenberg glottal flow and its derivative (the excitation), with jitter and shimmer."""
    n = len(f0)
    f0 = f0 * (1 + voice.jitter * smooth_noise(rng, n, 80.0))
    frac = np.cumsum(f0 / SR) % 1.0
    tp = 0.7 * voice.open_quotient
    tn = 0.3 * voice.open_quotient
    flow = np.where(frac < tp, 0.5 * (1 - np.cos(np.pi * frac / tp)),
                    np.where(frac < tp + tn, np.cos(0.5 * np.pi * np.clip(frac - tp, 0, None) / tn), 0.0))
    deriv = np.diff(flow, prepend=0.0) * (SR / f0)
    shimmer = 1 + 0.1 * smooth_noise(rng, n, 60.0)
    return flow, deriv * shimmer


def _formant_gain(formants: np.ndarray, bandwidths: np.ndarray) -> np.ndarray:
    """Cascade of second-order resonances (unity at DC), evaluated on the STFT bins per frame."""
    f2 = (FREQS ** 2).astype(np.float32)[None, None, :]
    fk = (formants ** 2).astype(np.float32)[:, :, None]
    power = (fk - f2) ** 2 + f2 * (bandwidths ** 2).astype(np.float32)[:, :, None]
    numerator = np.prod(formants.astype(np.float64) ** 2, axis=1)[:, None]
    return numerator / np.sqrt(np.prod(power, axis=1, dtype=np.float64))  # one sqrt instead of five


def _smooth_track(x: np.ndarray, width: int) -> np.ndarray:
    if width <= 1 or len(x) < width:
        return x
    k = np.ones(width) / width
    return np.convolve(np.pad(x, (width // 2, width - 1 - width // 2), mode="edge"), k, mode="valid")


def speech_phrase(voice: Voice, rng: np.random.Generator, target: float) -> np.ndarray:
    """One phrase of ``voice`` lasting at most about ``target`` seconds, unit RMS.

    Words of 1-4 syllables (onset consonant, vowel, optional coda) separated by pauses under 0.25 s,
    so the whole phrase is one annotated speech segment: the returned signal starts at the first
    sound and ends at the last one.
    """
    rate = voice.rate * rng.uniform(0.85, 1.15)
    syl = 1.0 / rate
    events: list[tuple] = []  # (kind, t0, t1, info)
    t = 0.0
    while True:
        room = max(1, int(round((target - t) / syl)))
        n_syl = min(int(rng.choice([1, 2, 3, 4], p=[0.35, 0.35, 0.2, 0.1])), room)
        for s in range(n_syl):
            stress = rng.random() < (0.55 if s == 0 else 0.25)
            dur = syl * rng.uniform(0.75, 1.25) * (1.25 if stress else 1.0)
            onset = rng.choice(["none", "fric", "plos", "nasal"], p=[0.25, 0.25, 0.3, 0.2])
            coda = rng.choice(["none", "fric", "nasal", "plos"], p=[0.6, 0.15, 0.15, 0.1])
            c_on = 0.0 if onset == "none" else dur * rng.uniform(0.22, 0.35)
            c_off = 0.0 if coda == "none" else dur * rng.uniform(0.12, 0.22)
            place_on = _PLACE_NAMES[rng.integers(len(_PLACE_NAMES))]
            if onset != "none":
                events.append((onset, t, t + c_on, dict(place=place_on, voiced=rng.random() < 0.35)))
            v0 = t + c_on
            v1 = t + dur - c_off
            events.append(("vowel", v0, v1, dict(vowel=int(rng.integers(len(_VOWELS))), stress=stress)))
            if coda != "none":
                events.append((coda, v1, t + dur, dict(place=_PLACE_NAMES[rng.integers(len(_PLACE_NAMES))],
                                                       voiced=rng.random() < 0.35)))
            t += dur
        if t >= 0.85 * target or t + 1.5 * syl > target:
            break
        if rng.random() < 0.45:
            t += rng.uniform(0.05, 0.25)  # short pause between words, still inside the segment
    total = t
    n = int(np.ceil(total * SR)) + 1

    venv = np.zeros(n)
    uenv = np.zeros(n)
    keys_t: list[float] = []
    keys_f: list[tuple] = []
    accents: list[tuple] = []
    fric: list[tuple] = []  # (t0, t1, fc, bw)
    fs = voice.formant_scale

    def paint(env, t0, t1, amp, att=0.012, rel=0.012, shape=None):
        a, b = int(t0 * SR), min(n, int(t1 * SR))
        if b <= a:
            return
        w = ramp_window(b - a, int(att * SR), int(rel * SR)) if shape is None else shape(b - a)
        env[a:b] = np.maximum(env[a:b], amp * w)

    for kind, t0, t1, info in events:
        mid = 0.5 * (t0 + t1)
        if kind == "vowel":
            target_f = _VOWELS[info["vowel"]] * fs * rng.uniform(0.95, 1.05, 3)
            amp = (1.0 if info["stress"] else 0.7) * rng.uniform(0.85, 1.1)
            paint(venv, t0, t1, amp, att=0.02, rel=0.035)
            for q in (0.3, 0.7):
                keys_t.append(t0 + q * (t1 - t0))
                keys_f.append(tuple(target_f))
            if info["stress"]:
                accents.append((mid, rng.uniform(0.4, 1.0)))
        elif kind == "nasal":
            paint(venv, t0, t1, rng.uniform(0.18, 0.3), att=0.01, rel=0.01)
            keys_t.append(mid)
            keys_f.append(tuple(np.array(_NASAL) * fs))
        elif kind == "fric":
            p = _PLACES[info["place"]]
            paint(uenv, t0, t1, p["amp"] * rng.uniform(0.7, 1.3), att=0.015, rel=0.015)
            fric.append((t0, t1, p["fc"] * voice.fric_scale, p["bw"]))
            if info["voiced"]:
                paint(venv, t0, t1, 0.12, att=0.01, rel=0.01)
            keys_t.append(mid)
            keys_f.append(tuple(np.array(p["locus"]) * fs))
        elif kind == "plos":
            p = _PLACES[info["place"]]
            closure = t0 + 0.55 * (t1 - t0)
            if info["voiced"]:
                paint(venv, t0, closure, 0.04, att=0.005, rel=0.005)  # voice bar
            burst_len = min(0.025, t1 - closure)
            tau = rng.uniform(0.004, 0.01)
            paint(uenv, closure, closure + burst_len, rng.uniform(0.35, 0.7),
                  shape=lambda m, tau=tau: np.exp(-np.arange(m) / (tau * SR)))
            fric.append((closure, closure + burst_len, p["fc"] * voice.fric_scale * rng.uniform(0.8, 1.2),
                         max(p["bw"], 1500.0)))
            if not info["voiced"] and t1 - closure > burst_len + 0.01:  # aspiration before the vowel
                paint(uenv, closure + burst_len, t1, 0.07, att=0.005, rel=0.005)
                fric.append((closure + burst_len, t1, 1500.0, 1500.0))
            keys_t.append(mid)
            keys_f.append(tuple(np.array(p["locus"]) * fs))

    # Pitch: declination, accents on stressed syllables, slow drift, phrase-final fall or rise.
    grid = np.arange(0.0, total + 0.01, 0.005)
    st = voice.f0_range * (0.35 - 0.7 * grid / max(total, 1e-3))
    for at, h in accents:
        st += h * voice.f0_range * 0.6 * np.exp(-0.5 * ((grid - at) / 0.09) ** 2)
    st += 0.4 * smooth_noise(rng, len(grid), 4.0 * SR / 200)  # grid is at 200 Hz: ~4 knots/s
    if rng.random() < 0.15:
        st += 4.0 * np.clip((grid - (total - 0.35)) / 0.35, 0, 1)
    else:
        st -= 2.0 * np.clip((grid - (total - 0.3)) / 0.3, 0, 1)
    f0 = voice.f0 * rng.uniform(0.93, 1.07) * 2 ** (np.interp(np.arange(n) / SR, grid, st) / 12)

    flow, deriv = _glottal(rng, f0, voice)
    noise_v = rng.standard_normal(n)
    noise_u = rng.standard_normal(n)
    excitation = deriv + voice.breath * noise_v * (0.3 + flow)

    spec_v = stft(excitation)
    ft = stft_times(len(spec_v))
    order = np.argsort(keys_t, kind="stable")
    kt = np.asarray(keys_t)[order]
    kf = np.asarray(keys_f)[order]
    tracks = [_smooth_track(np.interp(ft, kt, kf[:, k]), 5) for k in range(3)]
    formants = np.stack(tracks + [np.full(len(ft), 3400 * fs), np.full(len(ft), 4400 * fs)], axis=1)
    formants[:, 1] = np.maximum(formants[:, 1], formants[:, 0] + 200)
    bw = np.array([70.0, 95.0, 140.0, 220.0, 300.0]) * voice.bw_scale
    gain = _formant_gain(formants, np.broadcast_to(bw, formants.shape))
    gain += 0.015 * gain.max(axis=1, keepdims=True)  # higher-pole correction: some energy up to 8 kHz
    gain *= 10 ** (voice.tilt / 20 * np.log2(np.maximum(FREQS, 250.0) / 500.0))[None, :]
    spec_v *= gain
    voiced = istft(spec_v, n)
    voiced /= rms(voiced[venv > 0.3]) if np.any(venv > 0.3) else rms(voiced)

    spec_u = stft(noise_u)
    fc = np.full(len(ft), 4000.0)
    fb = np.full(len(ft), 2000.0)
    for t0, t1, c, b in fric:
        m = (ft >= t0 - 0.02) & (ft < t1 + 0.02)
        fc[m] = c
        fb[m] = b
    ugain = np.exp(-0.5 * ((FREQS[None, :] - fc[:, None]) / fb[:, None]) ** 2) + 0.03
    spec_u *= ugain
    unvoiced = unit_rms(istft(spec_u, n))

    y = voiced * venv + unvoiced * uenv
    active = np.flatnonzero((venv + uenv) > 1e-3)
    if len(active) == 0:
        return np.zeros(int(0.1 * SR))
    y = y[active[0]: active[-1] + 1]
    return unit_rms(y)


# ---------------------------------------------------------------------------------------------------
# Music
# ---------------------------------------------------------------------------------------------------

_MAJOR = np.array([0, 2, 4, 5, 7, 9, 11])
_MINOR = np.array([0, 2, 3, 5, 7, 8, 10])
_PROGRESSIONS = ([0, 4, 5, 3], [0, 5, 3, 4], [0, 3, 4, 4], [5, 3, 0, 4], [0, 0, 3, 4], [1, 4, 0, 0],
                 [0, 3, 0, 4], [0, 6, 5, 4])
_BELL = np.array([1.0, 2.76, 5.40, 8.93, 13.34, 18.64])


def _midi_hz(m):
    return 440.0 * 2.0 ** ((np.asarray(m, dtype=float) - 69) / 12)


def _timbre(name: str, rng: np.random.Generator) -> dict:
    """Harmonic profile, inharmonicity, envelope and vibrato of one instrument (drawn once per piece)."""
    u = rng.uniform
    if name == "piano":
        p = u(1.0, 1.5)
        return dict(K=12, amps=lambda k: k ** -p, B=u(1e-4, 5e-4), d0=u(1.0, 2.5), d1=u(0.3, 0.8),
                    attack=0.004, release=0.15, vib=(0, 0))
    if name == "pluck":
        pos = u(0.1, 0.3)  # plucking position shapes the harmonic comb
        return dict(K=12, amps=lambda k: np.abs(np.sin(np.pi * k * pos)) / k + 0.02, B=u(0, 1e-4),
                    d0=u(1.5, 4.0), d1=u(0.5, 1.5), attack=0.003, release=0.08, vib=(0, 0))
    if name == "organ":
        draw = np.zeros(17)
        draw[[1, 2, 3, 4, 6, 8, 16]] = u(0, 1, 7) * np.array([1, 2, 3, 4, 6, 8, 16]) ** -0.8
        draw[1] = 1.0
        return dict(K=16, amps=lambda k: draw[np.minimum(k, 16).astype(int)], B=0.0, d0=0.0, d1=0.0,
                    attack=0.02, release=0.05, vib=(u(5, 7), u(0, 0.002)))
    if name == "strings":
        p = u(0.9, 1.3)
        return dict(K=20, amps=lambda k: 1.0 / k ** p, B=0.0, d0=0.0, d1=0.0,
                    attack=u(0.08, 0.3), release=u(0.2, 0.5), vib=(u(4.5, 6.5), u(0.002, 0.006)), chorus=True)
    if name == "reed":
        even = u(0.03, 0.2)
        return dict(K=15, amps=lambda k: np.where(k % 2 == 1, 1.0, even) / k, B=0.0, d0=0.0, d1=0.0,
                    attack=u(0.02, 0.06), release=0.08, vib=(u(4.5, 6), u(0.001, 0.004)))
    if name == "brass":
        peak = u(2.5, 5.0)
        return dict(K=18, amps=lambda k: np.exp(-0.5 * ((k - peak) / 2.5) ** 2) + 0.2 / k, B=0.0, d0=0.2, d1=0.0,
                    attack=u(0.03, 0.08), release=0.1, vib=(u(5, 6), u(0.001, 0.004)))
    if name == "bell":
        return dict(K=6, amps=lambda k: 1.0 / k ** 0.7, B=0.0, d0=u(0.6, 1.5), d1=u(0.5, 1.2), ratios=_BELL,
                    attack=0.002, release=0.4, vib=(0, 0))
    if name == "flute":
        p = u(1.8, 2.6)
        return dict(K=6, amps=lambda k: 1.0 / k ** p, B=0.0, d0=0.0, d1=0.0, attack=u(0.04, 0.08),
                    release=0.08, vib=(u(4.5, 5.5), u(0.003, 0.007)), breath=u(0.03, 0.1))
    # "synth": saw or square, optionally decaying
    square = rng.random() < 0.5
    return dict(K=24, amps=lambda k: (np.where(k % 2 == 1, 1.0, 0.0) if square else 1.0) / k, B=0.0,
                d0=u(0.0, 1.0), d1=u(0.0, 0.2), attack=u(0.005, 0.03), release=0.1, vib=(5.0, u(0, 0.002)),
                chorus=True)


_TIMBRE_NAMES = ("piano", "pluck", "organ", "strings", "reed", "brass", "bell", "flute", "synth")


def _note(freq: float, dur: float, tb: dict, vel: float, rng: np.random.Generator) -> np.ndarray:
    n = int((dur + tb["release"]) * SR)
    t = np.arange(n, dtype=np.float32) / SR
    if "ratios" in tb:
        ratios = tb["ratios"]
        k = np.arange(1, len(ratios) + 1, dtype=float)
    else:
        k = np.arange(1, tb["K"] + 1, dtype=float)
        ratios = k * np.sqrt(1 + tb["B"] * k ** 2)
    keep = ratios * freq < _NYQ_SAFE
    if not np.any(keep):
        return np.zeros(n)
    k, ratios = k[keep], ratios[keep]
    amps = np.asarray(tb["amps"](k), dtype=float) * np.clip(1 + 0.15 * rng.standard_normal(len(k)), 0.3, None)
    vr, vd = tb["vib"]
    tt = t if vd == 0 else t + (vd / (2 * np.pi * vr)) * np.sin(2 * np.pi * vr * t).astype(np.float32)
    phases = rng.uniform(0, 2 * np.pi, len(k))
    if tb["d1"] == 0 and "ratios" not in tb and tb["B"] == 0:  # fixed spectrum: one table lookup
        cycles = freq * tt.astype(np.float64)
        x = wavetable(cycles, amps, k, phases)
        if tb.get("chorus"):
            x = x + 0.7 * wavetable(cycles * 1.004 + 0.25, amps, k, phases)
        if tb["d0"] > 0:
            x = x * np.exp(-t * tb["d0"])
    else:  # per-partial decay or inharmonic partials: explicit sinusoids
        arg = (2 * np.pi * freq) * tt[:, None] * ratios[None, :].astype(np.float32) + phases.astype(np.float32)
        parts = np.sin(arg)
        parts *= np.exp(-t[:, None] * (tb["d0"] + tb["d1"] * k[None, :]).astype(np.float32))
        x = np.einsum("ik,k->i", parts, amps.astype(np.float32))
    if tb.get("breath"):
        x = x + tb["breath"] * bandpass(rng.standard_normal(n), freq, 4 * freq + 100, order=2) * 3
    env = np.ones(n)
    a = max(1, int(tb["attack"] * SR))
    env[:a] = np.linspace(0, 1, a)
    on = int(dur * SR)
    if on < n:
        env[on:] = np.exp(-np.arange(n - on) / (0.25 * tb["release"] * SR))
    return vel * x * env


def _drum(kind: str, rng: np.random.Generator) -> np.ndarray:
    if kind == "kick":
        t = np.arange(int(0.3 * SR)) / SR
        f = 45 + rng.uniform(60, 120) * np.exp(-t / 0.03)
        return np.sin(2 * np.pi * np.cumsum(f) / SR) * np.exp(-t / rng.uniform(0.08, 0.2))
    if kind == "snare":
        t = np.arange(int(0.25 * SR)) / SR
        body = np.sin(2 * np.pi * rng.uniform(160, 220) * t) * np.exp(-t / 0.04)
        rattle = bandpass(rng.standard_normal(len(t)), 1000, 6000, order=2) * np.exp(-t / rng.uniform(0.05, 0.12))
        return 0.5 * body + 1.2 * rattle
    t = np.arange(int(0.12 * SR)) / SR  # hihat
    return highpass(rng.standard_normal(len(t)), 5000) * np.exp(-t / rng.uniform(0.01, 0.04)) * 0.9


def music_piece(rng: np.random.Generator, duration: float) -> np.ndarray:
    """Tonal music: chord progression, bass, melody and (often) drums, with a short room reverb. Unit RMS."""
    n = int(round(duration * SR))
    pad = 2 * SR
    out = np.zeros(n + pad)
    bpm = rng.uniform(70, 160)
    beat = 60.0 / bpm
    meter = 3 if rng.random() < 0.2 else 4
    bar = meter * beat
    scale = _MAJOR if rng.random() < 0.6 else _MINOR
    root = int(rng.integers(43, 55))
    prog = _PROGRESSIONS[rng.integers(len(_PROGRESSIONS))]
    bars_per_chord = int(rng.choice([1, 2]))
    style = rng.choice(["band", "ambient", "solo", "orchestral", "electronic"], p=[0.3, 0.2, 0.2, 0.15, 0.15])

    def degree(d, octave=0):
        return root + 12 * (octave + d // 7) + scale[d % 7]

    def add(x, at):
        s = int(at * SR)
        if s >= len(out):
            return
        m = min(len(x), len(out) - s)
        out[s:s + m] += x[:m]

    n_bars = int(np.ceil(duration / bar)) + 1
    chords = [prog[(b // bars_per_chord) % len(prog)] for b in range(n_bars)]
    names = list(_TIMBRE_NAMES)
    pick = lambda *opts: _timbre(str(rng.choice(opts)), rng)  # noqa: E731
    if style == "band":
        comp, bass, lead, drums = pick("piano", "pluck", "organ"), pick("pluck", "synth"), pick(*names), True
    elif style == "ambient":
        comp, bass, lead, drums = pick("strings", "organ", "synth"), None, pick("flute", "bell", "reed"), False
    elif style == "solo":
        comp = pick("piano", "pluck", "bell")
        bass, lead, drums = comp, comp, False
    elif style == "orchestral":
        comp, bass, lead, drums = pick("strings"), pick("pluck", "strings"), pick("brass", "reed", "flute"), False
    else:
        comp, bass, lead, drums = pick("synth"), pick("synth"), pick("synth", "bell"), True
    sustained = comp["d0"] == 0 and comp["d1"] == 0
    arpeggio = not sustained and rng.random() < 0.5

    levels = dict(comp=rng.uniform(0.5, 1.0), bass=rng.uniform(0.5, 1.0), lead=rng.uniform(0.6, 1.2),
                  drums=rng.uniform(0.5, 1.2))
    for b in range(n_bars):
        t0 = b * bar
        if t0 > duration:
            break
        d = chords[b]
        tones = [degree(d, 1), degree(d + 2, 1), degree(d + 4, 1)] + ([degree(d + 6, 1)] if rng.random() < 0.3 else [])
        if sustained:
            if b % bars_per_chord == 0:
                for m in tones:
                    add(_note(float(_midi_hz(m)), bar * bars_per_chord, comp, levels["comp"] * 0.5, rng), t0)
        elif arpeggio:
            steps = meter * 2
            for s in range(steps):
                m = tones[s % len(tones)] + (12 if (s // len(tones)) % 2 else 0)
                add(_note(float(_midi_hz(m)), beat * 0.5, comp, levels["comp"] * rng.uniform(0.35, 0.5), rng),
                    t0 + s * beat / 2)
        else:
            for s in range(meter):
                for j, m in enumerate(tones):  # strummed chord on each beat
                    add(_note(float(_midi_hz(m)), beat * 0.9, comp, levels["comp"] * rng.uniform(0.3, 0.45), rng),
                        t0 + s * beat + j * 0.012)
        if bass is not None:
            pattern = [0.0] if rng.random() < 0.3 else [i * beat for i in range(meter)]
            for p in pattern:
                length = bar if len(pattern) == 1 else beat * 0.9
                mm = degree(d, 0) - 12 + (7 if (p > 0 and rng.random() < 0.25) else 0)
                add(_note(float(_midi_hz(mm)), length, bass, levels["bass"] * 0.8, rng), t0 + p)
        if drums:
            kick = _drum("kick", rng)
            snare = _drum("snare", rng)
            hat = _drum("hihat", rng)
            four = style == "electronic"
            for s in range(meter * 2):
                at = t0 + s * beat / 2
                vel = levels["drums"] * rng.uniform(0.7, 1.0)
                if (four and s % 2 == 0) or (not four and s in (0, 4)) or (s == 5 and rng.random() < 0.3):
                    add(kick * vel, at)
                if s % 4 == 2 and meter == 4 or (meter == 3 and s == 4):
                    add(snare * vel * 0.7, at)
                add(hat * vel * rng.uniform(0.2, 0.4), at)
    # Melody: scale-wise random walk over the chords, with rests.
    t = 0.0
    pos = int(rng.integers(7, 12))
    while t < duration:
        length = beat * float(rng.choice([0.5, 1, 1, 1.5, 2, 0.5]))
        if rng.random() > 0.1:
            b = min(int(t / bar), n_bars - 1)
            if rng.random() < 0.4:
                pos = chords[b] + 7 + int(rng.choice([0, 2, 4]))
            else:
                pos = int(np.clip(pos + rng.choice([-2, -1, -1, 1, 1, 2, 3]), 5, 16))
            add(_note(float(_midi_hz(degree(pos, 1))), length * 0.95, lead, levels["lead"] * 0.7, rng), t)
        t += length
    out = out[:n]
    wet = rng.uniform(0.1, 0.5)
    out = convolve_same(out, reverb_ir(rng, rng.uniform(0.3, 1.5), wet))
    return unit_rms(out)


# ---------------------------------------------------------------------------------------------------
# Noise
# ---------------------------------------------------------------------------------------------------

NOISE_KINDS = ("white", "pink", "brown", "hum", "crackle", "rain", "wind", "traffic", "machine", "applause")


def _impulses(rng, n, rate_hz, kernel, heavy=True):
    count = rng.poisson(rate_hz * n / SR)
    x = np.zeros(n)
    if count:
        pos = rng.integers(0, n, count)
        amp = (rng.pareto(2.5, count) + 1 if heavy else rng.uniform(0.5, 1.0, count)) * rng.choice([-1, 1], count)
        np.add.at(x, pos, amp)
    return sps.oaconvolve(x, kernel)[:n]


def noise_texture(rng: np.random.Generator, duration: float, kind: str | None = None) -> np.ndarray:
    """One background/event noise of a random (or given) texture, slowly level-modulated. Unit RMS."""
    n = int(round(duration * SR))
    kind = kind or NOISE_KINDS[rng.integers(len(NOISE_KINDS))]
    t = np.arange(n) / SR
    if kind in ("white", "pink", "brown"):
        x = colored_noise(rng, n, {"white": 0.0, "pink": 1.0, "brown": 2.0}[kind])
        if kind != "white" and rng.random() < 0.5:
            x = highpass(x, rng.uniform(40, 200), order=2)
    elif kind == "hum":
        f = rng.choice([50.0, 60.0]) * (1 + 0.002 * smooth_noise(rng, n, 0.5))
        k = np.arange(1, 14)
        amps = rng.uniform(0.2, 1.0, len(k)) * k ** -rng.uniform(0.3, 1.2)
        amps[1::2] *= rng.uniform(0.2, 1.0)
        x = wavetable(np.cumsum(f) / SR, amps, k, rng.uniform(0, 2 * np.pi, len(k)))
        x = unit_rms(x) + rng.uniform(0.05, 0.4) * colored_noise(rng, n, 1.0)
    elif kind == "crackle":
        m = int(rng.integers(4, 30))
        kernel = rng.standard_normal(m) * np.exp(-np.arange(m) / (m / 3))
        x = _impulses(rng, n, rng.uniform(8, 80), kernel)
        x = highpass(x, 300, order=2)
        x = unit_rms(x)
        x = 6 * np.tanh(x / 6) + rng.uniform(0.1, 0.5) * colored_noise(rng, n, rng.uniform(0, 1))
    elif kind == "rain":
        m = int(rng.uniform(0.003, 0.01) * SR)
        kernel = bandpass(rng.standard_normal(m), 1500, 7000, order=2) * np.exp(-np.arange(m) / (m / 4))
        drops = unit_rms(_impulses(rng, n, rng.uniform(80, 500), kernel, heavy=False))
        bed = highpass(colored_noise(rng, n, 1.0), rng.uniform(300, 1200))
        x = drops + rng.uniform(0.5, 2.0) * unit_rms(bed)
    elif kind == "wind":
        cutoff = 250 + 700 * np.abs(smooth_noise(rng, n, 0.6))
        cut_f = lambda ft: np.interp(ft, t, cutoff)[:, None]  # noqa: E731
        x = filter_frames(rng.standard_normal(n),
                          lambda ft: 1 / np.sqrt(1 + (FREQS[None, :] / cut_f(ft)) ** 4))
        x = unit_rms(x) * np.exp(0.6 * smooth_noise(rng, n, 0.4))
    elif kind == "traffic":
        x = unit_rms(lowpass(colored_noise(rng, n, 2.0), rng.uniform(200, 600)))
        for _ in range(rng.poisson(max(1.0, duration / 4))):
            c, w = rng.uniform(0, duration), rng.uniform(0.8, 2.5)
            env = np.exp(-0.5 * ((t - c) / w) ** 2)
            sel = env > 1e-3
            if not np.any(sel):
                continue
            eng = rng.uniform(30, 90) * (1 + 0.05 * np.tanh((c - t[sel]) / w))  # pitch drops as it passes
            car = np.sin(2 * np.pi * np.cumsum(eng) / SR) + 0.5 * np.sin(4 * np.pi * np.cumsum(eng) / SR)
            car = car + 2 * bandpass(rng.standard_normal(sel.sum()), 100, rng.uniform(800, 2500), order=2)
            x[sel] += rng.uniform(1, 4) * car * env[sel]
    elif kind == "machine":
        f = rng.uniform(25, 140) * (1 + 0.01 * smooth_noise(rng, n, 0.3))
        cycles = np.cumsum(f) / SR
        phase = 2 * np.pi * cycles
        k = np.arange(1, 9)
        tone = wavetable(cycles, rng.uniform(0.1, 1.0, len(k)) / k)
        band = bandpass(rng.standard_normal(n), rng.uniform(150, 600), rng.uniform(1500, 5000), order=2)
        x = unit_rms(tone) + rng.uniform(0.5, 1.5) * unit_rms(band) * (1 + 0.5 * np.sin(phase))
    else:  # applause: dense clap bursts
        m = int(0.006 * SR)
        kernel = bandpass(rng.standard_normal(m), 700, 4500, order=2) * np.exp(-np.arange(m) / (m / 3))
        x = unit_rms(_impulses(rng, n, rng.uniform(40, 200), kernel, heavy=False))
        x = x * (0.6 + 0.4 * np.clip(smooth_noise(rng, n, 0.5), -1, 1))
    depth = rng.uniform(0.0, 0.35)
    x = unit_rms(x) * np.exp(depth * np.clip(smooth_noise(rng, n, rng.uniform(0.2, 2.0)), -2.5, 2.5))
    return unit_rms(x)
