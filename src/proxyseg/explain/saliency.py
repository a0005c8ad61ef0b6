"""Agreement of the proxy's explanations with the teacher's gradient saliency (METHOD §8: are the relevant
frequencies really what the model decides on?).

Teacher saliency: for a segment x where class c is annotated active, the magnitude |S| of its STFT (the
proxy's framing: hop 320, ``n_fft``/``win_length`` of the spectrogram cache) is made a leaf of the graph,
the waveform is resynthesised with the original phase (ISTFT), and WavLM -> layer fusion -> TCN give the
class logit; its mean over the segment's frames is differentiated with respect to |S|. When the feature
cache was extracted from normalised waveforms (its attribute ``do_normalize``), the resynthesised
segment is normalised the same way before WavLM (zero mean, unit variance over the segment, inside the
graph: the gradient goes through the normalisation, part of the model's own preprocessing). The saliency map
is the **signed** gradient x input, ``d logit_c / d|S| * |S|`` (positive where a bin speaks for the class,
negative where it speaks against it); the profile is its mean over frames, positive part, normalised to sum
1 per segment and averaged over the segments of the class. The unsigned map ``|d logit_c / d|S|| * |S|``,
which mixes in the evidence against the class, is kept beside it (``profiles_unsigned``,
``spearman_rho_unsigned``).

Comparison: per class, both the teacher's saliency profile and the proxy's prototype ``P_c(f)``
(``explain.class_prototypes``) are averaged over the bins of each frequency band (log-spaced;
:func:`log_bands`; means, not sums, so that wide bands do not win by width alone) and compared by
Spearman rank correlation over the bands. As a control, ``rho_other_classes`` is the mean correlation of
the same saliency profile with the *other* classes' prototypes: agreement that is about class c should
exceed it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from proxyseg.explain import relevance as ex
from proxyseg.core.atomic import atomic_path
from proxyseg.core.device import resolve_device
from proxyseg.core.figures import new_figure, save_figure
from proxyseg.features.wavlm import load_wavlm
from proxyseg.core.frames import CLASSES, FRAME_RATE
from proxyseg.core.audio import load_audio
from proxyseg.core.provenance import provenance_json
from proxyseg.dsp import istft, stft, stft_frequencies
from proxyseg.settings import Runtime, Saliency, Spectrogram
from proxyseg.teacher.model import load_teacher

log = logging.getLogger("proxyseg.explain.saliency")


__all__ = ["log_bands", "band_sums", "teacher_saliency", "segment_saliency", "compare_rows",
           "plot_saliency"]


def log_bands(num_bands: int, max_hz: float = 8000.0, low_hz: float = 100.0) -> list[tuple[float, float]]:
    """``num_bands`` bands: ``[0, low_hz)`` then log-spaced up to ``max_hz`` (closed at the top)."""
    if num_bands < 2:
        raise ValueError("need at least 2 bands")
    edges = [0.0, *np.geomspace(low_hz, max_hz, num_bands).tolist()]
    return list(zip(edges[:-1], edges[1:]))


def band_sums(profile: np.ndarray, freqs: np.ndarray, bands) -> np.ndarray:
    """Sum of ``profile`` (F,) per band; a bin at f is in ``[lo, hi)``, the top band includes its edge."""
    top = max(hi for _, hi in bands)
    return np.array([profile[(freqs >= lo) & ((freqs < hi) | ((hi == top) & (freqs == hi)))].sum()
                     for lo, hi in bands])


def segment_saliency(samples: np.ndarray, wavlm, teacher, layers: list[int], c: int, n_fft: int = 512,
                     win_length: int = 400, device="cpu") -> np.ndarray:
    """Saliency profiles ``(signed, unsigned)`` (F,) of class ``c`` for one segment: the positive part of the
    signed gradient x input's mean over frames, and the unsigned one; each normalised to sum 1 (zeros when
    the gradient vanishes)."""
    x = torch.as_tensor(samples, dtype=torch.float32, device=device)
    spec = stft(x, n_fft=n_fft, win_length=win_length)
    mag = spec.abs().detach().requires_grad_(True)
    phase = torch.polar(torch.ones_like(mag), spec.angle()).detach()
    with torch.enable_grad():
        wav = istft(mag * phase, length=x.shape[0], n_fft=n_fft, win_length=win_length)
        hidden = wavlm(wav[None], output_hidden_states=True).hidden_states
        states = torch.stack([hidden[j] for j in layers], dim=2)  # (1, T, L, D)
        logits, _ = teacher(states)
        logits[0, c].mean().backward()
    gx = (mag.grad * mag).detach().cpu().double()
    signed = gx.mean(dim=1).clamp_min(0.0).numpy()
    unsigned = gx.abs().mean(dim=1).numpy()
    return tuple(v / v.sum() if v.sum() > 0 else v for v in (signed, unsigned))


def teacher_saliency(teacher_pt, wavlm: str, features_h5, items, out_npz, settings: Saliency | dict | None = None,
                     seed: int = 0, spectrogram: Spectrogram | dict | None = None,
                     runtime: Runtime | dict | None = None) -> dict:
    """Class saliency profiles of the teacher over segments of ``items`` (``(manifest.tsv, targets.h5)``
    pairs); writes ``out_npz`` (``profiles`` (F, 4), ``counts`` (4,), ``freqs_hz``) and a PNG beside it."""
    import h5py

    s = Saliency.parse(settings)
    spectrogram = Spectrogram.parse(spectrogram)
    device = resolve_device(Runtime.parse(runtime).device)
    teacher, _ = load_teacher(teacher_pt, device)
    for p in teacher.parameters():
        p.requires_grad_(False)
    with h5py.File(features_h5, "r") as h5:
        layers = [int(i) for i in np.atleast_1d(h5.attrs["layers"])]
        # caches written before proxyseg normalised WavLM input have no attribute: raw waveforms, like them
        do_normalize = bool(h5.attrs.get("do_normalize", False))
    net = load_wavlm(wavlm, normalize=do_normalize).to(device)
    frames = int(round(s["segment_seconds"] * FRAME_RATE))
    F = spectrogram["n_fft"] // 2 + 1
    sums, counts = np.zeros((F, len(CLASSES))), np.zeros(len(CLASSES), dtype=np.int64)
    sums_unsigned = np.zeros_like(sums)
    for manifest, targets_h5 in items:
        audio = pd.read_csv(manifest, sep="\t").set_index("uri")["audio"].to_dict()
        with h5py.File(targets_h5, "r") as t:
            targets = {uri: t[uri][()] for uri in t}
        chosen = ex.select_segments_across(targets, frames, int(s["segments"]), rng=seed)
        for c, name in enumerate(CLASSES):
            for uri, start in chosen[name]:
                t0 = start / FRAME_RATE
                x = load_audio(audio[uri], t0, t0 + (frames - 1) / FRAME_RATE + 0.025)
                # the STFT of the raw audio the teacher hears (spectrogram.level_db is the proxy's alone)
                signed, unsigned = segment_saliency(x, net, teacher, layers, c, device=device,
                                                    n_fft=spectrogram.n_fft, win_length=spectrogram.win_length)
                sums[:, c] += signed
                sums_unsigned[:, c] += unsigned
                counts[c] += 1
        log.info("saliency %s: segments per class %s", manifest, dict(zip(CLASSES, counts.tolist())))
    profiles = sums / np.maximum(counts, 1)[None, :]
    unsigned = sums_unsigned / np.maximum(counts, 1)[None, :]
    freqs = stft_frequencies(spectrogram["n_fft"])
    prov = provenance_json(stage="saliency", teacher=str(teacher_pt), wavlm=str(wavlm), settings=s, seed=seed,
                           items=[list(map(str, it)) for it in items], layers=layers, do_normalize=do_normalize)
    with atomic_path(out_npz) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, profiles=profiles, profiles_unsigned=unsigned, counts=counts, freqs_hz=freqs, provenance=np.array(prov))
    plot_saliency(Path(out_npz).with_suffix(".png"), profiles, freqs, counts)
    return {"counts": dict(zip(CLASSES, counts.tolist()))}


def compare_rows(system: str, saliency_npz, prototypes_npz, num_bands: int = 16) -> pd.DataFrame:
    """Per class: Spearman rank correlation over frequency bands between the teacher's saliency profile and
    the proxy's prototype, with the band each peaks in. NaN where either is empty."""
    from scipy.stats import spearmanr

    with np.load(saliency_npz) as z:
        sal, sal_counts, freqs = z["profiles"], z["counts"], z["freqs_hz"]
        unsigned = z["profiles_unsigned"] if "profiles_unsigned" in z else None
    proto = ex.load_prototypes(prototypes_npz)
    if proto.P.shape[0] != sal.shape[0]:
        raise ValueError(f"{prototypes_npz} has {proto.P.shape[0]} bins, {saliency_npz} {sal.shape[0]}")
    bands = log_bands(num_bands, float(freqs[-1]))
    width = band_sums(np.ones_like(freqs), freqs, bands)
    bands = [b for b, n in zip(bands, width) if n > 0]  # drop bands without a bin
    width = width[width > 0]
    rows = []
    for c, name in enumerate(CLASSES):
        a, b = band_sums(sal[:, c], freqs, bands) / width, band_sums(proto.P[:, c], freqs, bands) / width
        ok = sal_counts[c] > 0 and proto.counts[c] > 0 and a.sum() > 0 and b.sum() > 0
        rho, p = spearmanr(a, b) if ok else (np.nan, np.nan)
        rho_unsigned = spearmanr(band_sums(unsigned[:, c], freqs, bands) / width, b)[0] \
            if ok and unsigned is not None and unsigned[:, c].sum() > 0 else np.nan
        # control: the same saliency against the other classes' prototypes; close to rho means the agreement
        # is the recordings' shared spectral tilt, not something specific to the class
        others = [spearmanr(a, band_sums(proto.P[:, o], freqs, bands) / width)[0] for o in range(len(CLASSES))
                  if o != c and proto.counts[o] > 0 and proto.P[:, o].sum() > 0] if ok else []
        fmt = lambda band: f"{band[0]:.0f}-{band[1]:.0f}"  # noqa: E731
        rows.append({"system": system, "class": name, "saliency_segments": int(sal_counts[c]),
                     "prototype_segments": int(proto.counts[c]), "bands": len(bands), "spearman_rho": float(rho),
                     "p_value": float(p), "spearman_rho_unsigned": float(rho_unsigned),
                     "rho_other_classes": float(np.mean(others)) if others else float("nan"),
                     "saliency_peak_band_hz": fmt(bands[int(np.argmax(a))]) if ok else "",
                     "prototype_peak_band_hz": fmt(bands[int(np.argmax(b))]) if ok else ""})
    return pd.DataFrame(rows)


def plot_saliency(path: str | os.PathLike, profiles: np.ndarray, freqs: np.ndarray, counts) -> None:
    """The teacher's class saliency profiles against frequency (log axis, peak = 1)."""
    fig = new_figure(figsize=(8, 4.5))
    ax = fig.subplots()
    keep = freqs > 0
    for c, name in enumerate(CLASSES):
        y = profiles[keep, c]
        peak = y.max()
        ax.plot(freqs[keep], y / peak if peak > 0 else y, color=ex._COLORS[name], label=f"{name} (n={int(counts[c])})")
    ax.set_xscale("log")
    ax.set_xlabel("frequency (Hz)")
    ax.set_ylabel("signed gradient x input, positive part (peak = 1)")
    ax.set_title("Teacher input-gradient saliency per class: evidence for the class (mean over segments)",
                 fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, cropped=True)
