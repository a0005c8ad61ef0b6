"""The `explain` stage: local explanations of chosen test segments and global class prototypes of a proxy.

Reads the proxy's inference files (H, probabilities), the spectrogram caches and the frame targets;
the arithmetic and figures are :mod:`proxyseg.explain.relevance`'s. Each local figure gets its listenable
explanation beside it (``<class>_<n>.wav``: the soft mask of the relevant components on the magnitude
STFT, original phase, ISTFT) and the residual (``<class>_<n>_residual.wav``: the complementary mask, what
the decision did not rest on). ``mask_domain`` chooses where the mask applies (``proxyseg.explain.relevance``):
``linear`` (default) on the magnitude, explanation + residual = the audio; ``log`` (L2I) on the
log-power spectrogram ``X``, resynthesised through ``exp(.) - 1``. The audio comes from the
``manifest.tsv`` that label harmonisation writes beside ``targets.h5``.

A dictionary with negative entries (``learned_random``) is explained through its non-negative part
``W⁺`` (masks and prototypes; ``proxyseg.explain.relevance``, "Dictionaries with negative entries"); the negative
part's projection is stored as ``P_negative`` in ``prototypes.npz`` and drawn in the figures, and its
share of the dictionary's mass is recorded in ``explain.json``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from proxyseg.explain import relevance as ex
from proxyseg.settings import Explain
from proxyseg.core.atomic import atomic_open, atomic_path
from proxyseg.core.frames import CLASSES, FRAME_RATE, HOP, SAMPLE_RATE, WIN
from proxyseg.core.audio import load_audio
from proxyseg.core.provenance import provenance_json
from proxyseg.proxy.model import load_proxy

log = logging.getLogger("proxyseg.explain.relevance")



def _targets(items) -> dict[str, np.ndarray]:
    """Frame targets of every file, keyed ``"<item>/<uri>"`` so files of several corpora never collide."""
    out = {}
    for i, (_, _, targets_h5) in enumerate(items):
        for uri, t in ex.read_targets(targets_h5).items():
            out[f"{i}/{uri}"] = t
    return out


def _segment(items, key: str, start: int, frames: int):
    i, uri = key.split("/", 1)
    infer_h5, spec_h5, _ = items[int(i)]
    with h5py.File(infer_h5, "r") as inf, h5py.File(spec_h5, "r") as spec:
        H = inf[uri]["H"][start:start + frames].astype(np.float32).T  # (K, t)
        probs = inf[uri]["probs"][start:start + frames]
        X = spec[uri][start:start + frames].astype(np.float32).T  # (F, t)
        gain = float(spec[uri].attrs.get("gain", 1.0))  # spectrogram.level_db's, 1.0 at the raw level
    return uri, H, probs, X, gain


def _audio_paths(items) -> dict[str, str]:
    """``"<item>/<uri>"`` -> audio path, from the manifest beside each targets.h5 (absent: no WAVs)."""
    out = {}
    for i, (_, _, targets_h5) in enumerate(items):
        manifest = Path(targets_h5).with_name("manifest.tsv")
        if not manifest.is_file():
            log.warning("no %s: local explanations get no WAV", manifest)
            continue
        for uri, audio in pd.read_csv(manifest, sep="\t")[["uri", "audio"]].itertuples(index=False):
            out[f"{i}/{uri}"] = str(audio)
    return out


def write_listenable(path_wav, samples, W, H, components, n_fft: int, win_length: int,
                     mask_domain: str = "linear", level_gain: float = 1.0) -> Path:
    """Write the listenable explanation ``path_wav`` and its residual ``<stem>_residual.wav`` (16 kHz):
    masks ``M`` and ``1 - M`` of the relevant components (non-negative part of W) in ``mask_domain``."""
    import soundfile as sf

    mask = ex.explanation_mask(W, H, components)
    path_wav = Path(path_wav)
    residual = path_wav.with_name(path_wav.stem + "_residual.wav")
    for path, m in ((path_wav, mask), (residual, 1.0 - mask)):
        y = np.clip(ex.masked_audio(samples, m, n_fft, win_length, domain=mask_domain, level_gain=level_gain),
                    -1.0, 1.0)
        with atomic_path(path) as tmp:
            sf.write(str(tmp), y, SAMPLE_RATE, subtype="PCM_16", format="WAV")
    return residual


def explain_proxy(checkpoint, items, out_dir, settings: Explain | dict | None, seed: int = 0, local_items=None) -> dict:
    """``items``: (inference.h5, spectrograms.h5, targets.h5) triples that prototype segments are drawn
    from; ``local_items`` (default: ``items``) those of the locally explained segments. Writes to ``out_dir``:
    ``local/<class>_<n>.png``, ``prototypes.npz``, ``prototypes.png``, ``band_mass.tsv``, ``explain.json``.
    """
    s = Explain.parse(settings)
    out_dir = Path(out_dir)
    model, ckpt = load_proxy(checkpoint)
    W = model.W.detach().cpu().numpy()
    negative = ex.negative_share(W)
    if negative > 0:
        log.warning("%s: the dictionary (%s) has negative entries (%.1f %% of its mass): masks and prototypes "
                    "use its non-negative part; the negative part is stored as P_negative and drawn dotted",
                    checkpoint, model.mode, 100 * negative)
    theta = model.theta.weight.detach().cpu().numpy()[:, :, 0]  # (4, K)
    with h5py.File(items[0][1], "r") as spec:
        freqs = np.asarray(spec.attrs["freqs_hz"])
        n_fft, win_length = int(spec.attrs.get("n_fft", 512)), int(spec.attrs.get("win_length", 400))
    local_items = list(local_items or items)
    audio = _audio_paths(local_items)

    # local explanations of a few segments per class
    local_frames = int(round(s["segment_seconds"] * FRAME_RATE))
    chosen = ex.select_segments_across(_targets(local_items), local_frames, s["local_per_class"], rng=seed)
    written = []
    for name in CLASSES:
        for n, (key, start) in enumerate(chosen.get(name, [])):
            uri, H, probs, X, gain = _segment(local_items, key, start, local_frames)
            r = ex.local_relevance(H, theta)
            comps = ex.relevant_components(r, s["tau"])[name]
            path = out_dir / "local" / f"{name}_{n}.png"
            ex.plot_local_explanation(path, X, probs, r, W, freqs, name, comps, tau=s["tau"],
                                      threshold=s["threshold"],
                                      title=f"{name}: {uri} {start / FRAME_RATE:.2f}-"
                                            f"{(start + local_frames) / FRAME_RATE:.2f} s")
            record = {"class": name, "uri": uri, "start": start / FRAME_RATE,
                      "relevant_components": comps.tolist(), "figure": str(path)}
            if key in audio:
                t0 = start * HOP / SAMPLE_RATE
                samples = load_audio(audio[key], t0, t0 + (HOP * (H.shape[1] - 1) + WIN) / SAMPLE_RATE)
                wav = path.with_suffix(".wav")
                residual = write_listenable(wav, samples, W, H, comps, n_fft, win_length, s["mask_domain"], gain)
                record.update(audio=str(wav), residual=str(residual))
            written.append(record)

    # global prototypes over many segments per class
    proto_frames = int(round(s["prototype_seconds"] * FRAME_RATE))
    pool = ex.select_segments_across(_targets(items), proto_frames, s["prototype_segments"], rng=seed,
                                     stride=max(1, proto_frames // 2))
    acc = ex.PrototypeAccumulator(W.shape[1])
    for name in CLASSES:
        for key, start in pool.get(name, []):
            _, H, _, _, _ = _segment(items, key, start, proto_frames)
            acc.add_segment(H, theta, [name])
    counts = acc.counts_by_class()
    short = {c: n for c, n in counts.items() if 0 < n < s["prototype_segments"]}
    if short:
        log.warning("fewer prototype segments than asked (%d) for %s: the data has no more", s["prototype_segments"], short)
    mean = acc.mean()
    P, P_negative = ex.class_prototypes(mean, W), ex.negative_prototypes(mean, W)
    dictionary = {"mode": model.mode, "negative_share": negative,
                  "explained_with": "non-negative part W+ = max(W, 0)" if negative > 0 else "W (non-negative)"}
    prov = provenance_json(stage="explain", checkpoint=str(checkpoint), settings=s, seed=seed,
                           items=[list(map(str, it)) for it in items], dictionary=dictionary)
    ex.save_prototypes(out_dir / "prototypes.npz", P, mean, acc.counts, freqs, prov, P_negative=P_negative)
    ex.plot_prototypes(out_dir / "prototypes.png", P, freqs, counts, P_negative=P_negative)
    bands = ex.band_mass(P, freqs)
    with atomic_open(out_dir / "band_mass.tsv") as f:
        bands.to_csv(f, sep="\t", index=False)
    record = {"local": written, "prototype_counts": counts, "settings": s.as_dict(), "dictionary": dictionary,
              "provenance": json.loads(prov)}
    with atomic_open(out_dir / "explain.json") as f:
        json.dump(record, f, indent=2, default=str)
    return record
