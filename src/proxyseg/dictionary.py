"""NMF dictionary pre-training (METHOD §4): class-balanced spectrogram segments -> sparse NMF -> W.

Segments of each class are drawn from the harmonised training split (frames where the class is
annotated active), their spectrograms concatenated along time, and factorised with unit-norm atoms.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import h5py
import numpy as np
import torch

from .atomic import atomic_open, atomic_path
from .errors import InputError
from .frames import CLASSES, FRAME_RATE
from .nmf import sparse_nmf
from .provenance import provenance_json, seed_everything

log = logging.getLogger("proxyseg.dictionary")

DEFAULTS = {"components": 128, "beta": 2.0, "mu": 1.0, "iterations": 200, "device": "auto",
            "segments": {"speech": 200, "music": 500, "noise": 500, "overlap": 0},
            "min_seconds": 1.0, "max_seconds": 4.0}


def draw_segments(pairs, counts: dict[str, int], min_seconds: float, max_seconds: float,
                  rng: np.random.Generator) -> tuple[np.ndarray, dict[str, int]]:
    """Concatenated ``(F, T)`` spectrogram of segments starting at random active frames of each class.

    ``pairs``: (spectrogram.h5, targets.h5). A segment starts on a frame where its class is active and
    lasts a random duration in [min_seconds, max_seconds] (cut at the file's end).
    """
    handles = [(h5py.File(s, "r"), h5py.File(t, "r")) for s, t in pairs]
    try:
        targets = {(i, uri): th[uri][:] for i, (_, th) in enumerate(handles) for uri in th}
        pieces, drawn = [], {}
        for name, n in counts.items():
            if n <= 0:
                continue
            c = CLASSES.index(name)
            active = [(key, np.flatnonzero(t[:, c] == 1)) for key, t in targets.items()]
            active = [(key, idx) for key, idx in active if len(idx)]
            if not active:
                log.warning("no active %s frame in the training split: no %s segment for the dictionary", name, name)
                drawn[name] = 0
                continue
            sizes = np.array([len(idx) for _, idx in active], dtype=float)
            files = rng.choice(len(active), size=n, p=sizes / sizes.sum())
            for f in files:
                (i, uri), idx = active[f]
                start = int(rng.choice(idx))
                length = int(round(rng.uniform(min_seconds, max_seconds) * FRAME_RATE))
                pieces.append(handles[i][0][uri][start:start + length].astype(np.float32))
            drawn[name] = n
        if not pieces:
            raise InputError(pairs[0][1], "no active frame of any requested class: the dictionary has nothing to learn")
        return np.concatenate(pieces).T, drawn
    finally:
        for s, t in handles:
            s.close()
            t.close()


def pretrain_dictionary(pairs, out_dir: str | os.PathLike, settings: dict, seed: int) -> dict:
    """Learn W and write ``dictionary.npz``, ``costs.tsv``, ``atoms.png`` and ``dictionary.json``."""
    unknown = set(settings) - set(DEFAULTS)
    if unknown:
        raise InputError(None, f"unknown nmf setting(s) {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    s = {**DEFAULTS, **settings}
    out_dir = Path(out_dir)
    seed_everything(seed)
    rng = np.random.default_rng(seed)
    X, drawn = draw_segments(pairs, s["segments"], s["min_seconds"], s["max_seconds"], rng)
    with h5py.File(pairs[0][0], "r") as h5:
        freqs = np.asarray(h5.attrs["freqs_hz"])
        n_fft, win_length = int(h5.attrs["n_fft"]), int(h5.attrs["win_length"])
    device = "cuda" if s["device"] == "auto" and torch.cuda.is_available() else (
        "cpu" if s["device"] == "auto" else s["device"])
    log.info("NMF on %d frames x %d bins (segments %s), K=%d, beta=%s, mu=%s, %d iterations on %s",
             X.shape[1], X.shape[0], drawn, s["components"], s["beta"], s["mu"], s["iterations"], device)
    result = sparse_nmf(X, s["components"], beta=s["beta"], mu=s["mu"], iterations=s["iterations"], seed=seed,
                        device=device)
    W = result.W.cpu().numpy().astype(np.float32)
    record = {"settings": s, "seed": seed, "segments_drawn": drawn, "frames": int(X.shape[1]),
              "final_cost": result.costs[-1] if result.costs else None, "n_fft": n_fft,
              "win_length": win_length, "device": device}
    prov = provenance_json(**record)
    with atomic_path(out_dir / "dictionary.npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, W=W, freqs_hz=freqs, costs=np.asarray(result.costs), provenance=prov)
    with atomic_open(out_dir / "costs.tsv") as f:
        f.write("iteration\tcost\n" + "".join(f"{i + 1}\t{c:.6g}\n" for i, c in enumerate(result.costs)))
    plot_atoms(out_dir / "atoms.png", W, freqs, result.costs)
    with atomic_open(out_dir / "dictionary.json") as f:
        json.dump(json.loads(prov), f, indent=2)
    return record


def plot_atoms(path, W: np.ndarray, freqs: np.ndarray, costs) -> None:
    """Atoms sorted by spectral centroid, frequency in Hz, beside the cost per iteration."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    order = np.argsort((W * freqs[:, None]).sum(0) / (W.sum(0) + 1e-12))
    fig = Figure(figsize=(11, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax, ax2 = fig.subplots(1, 2, gridspec_kw={"width_ratios": [2.2, 1]})
    im = ax.imshow(W[:, order], aspect="auto", origin="lower", cmap="magma",
                   extent=[0, W.shape[1], freqs[0], freqs[-1]])
    ax.set_xlabel("atom (sorted by spectral centroid)")
    ax.set_ylabel("frequency (Hz)")
    ax.set_title(f"NMF dictionary W: {W.shape[1]} unit-norm atoms")
    fig.colorbar(im, ax=ax, fraction=0.04)
    ax2.plot(np.arange(1, len(costs) + 1), costs)
    ax2.set_yscale("log")
    ax2.set_xlabel("iteration")
    ax2.set_ylabel("cost  D(X|WH) + mu |H|_1")
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
