"""Ground-truth accuracy of the proxy's listenable explanations (METHOD §7, "Ground truth").

The demo corpora are synthesised, so the true source of each class in every test file is known: the
corpus keeps it as ``stems/<uri>/<class>.wav`` (float32, 16 kHz mono, aligned sample for sample with the
file as :func:`proxyseg.core.audio.load_audio` reads it; ``proxyseg.corpora.demo.corpus``). For every test segment
where class c is annotated active (``explain.select_segments_across`` on the frame targets, at most
``max_segments`` per class and corpus, seeded), the proxy's relevant components R (local relevance
``r[k, c] > tau``, from the activations H of its inference file) give the soft mask
``M = Σ_{k∈R} w_k h_k / (W H + ε)`` (``explain.explanation_mask``; a dictionary with negative entries is
replaced by ReLU(W), with a warning) and the listenable explanation ``explain.masked_audio`` (M on the
magnitude STFT of the segment's audio, original phase, inverse STFT). It is scored against the stem of c:

* **SI-SDR improvement** (dB): ``SI-SDR(explanation, stem) - SI-SDR(mixture, stem)``. Positive: the
  explanation is closer to the true source than the audio it was cut from. SI-SDR (Le Roux et al. 2019)
  is computed on zero-mean signals: ``10 log10(|α s|² / |x - α s|²)``, ``α = <x, s> / |s|²``.
* **Band share**: the stem's *band* is the smallest set of STFT bins holding ``energy_share`` (default
  90 %) of the stem's energy in the segment (``|STFT|²`` summed over the segment's frames); the share of a
  signal is the part of its own energy that falls inside that band. The stem's own share is
  ``energy_share`` (or just above); the mixture's share says how much of the audio already lies there; an
  explanation that concentrates its energy where the true source is has a share above the mixture's.

References, scored the same way: the explanation made of the same number ``|R|`` of **random**
components (drawn uniformly from all K, ``draws`` seeded draws, scores averaged) and of random components
among those **active** in the segment (mean activation above :data:`ACTIVE`; harder: inactive components
give a near-silent "explanation"), and the **energy-matched** reference: active components in a random
order, added until their mask keeps as much of the segment's STFT energy as the explanation's (the fairest
of the three: an explanation cannot win by keeping more or less of the audio). The mixture itself is the
control of the band share (``share_mixture``) and of SI-SDR (``sisdr_mixture``).

One row per (proxy, corpus, class, segment); segments without a relevant component (``no_relevant``) or
whose stem is silent in the segment (``silent_stem``) are kept as rows but not scored. The overlap class
has no stem (it is not a source) and is not scored.
"""

from __future__ import annotations

import logging
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import soundfile as sf

from proxyseg.explain import relevance as ex
from proxyseg.core.errors import InputError
from proxyseg.explain.relevance import ACTIVE
from proxyseg.core.frames import CLASSES, FRAME_RATE, HOP, SAMPLE_RATE, WIN
from proxyseg.core.audio import load_audio
from proxyseg.settings import Explain, Groundtruth

log = logging.getLogger("proxyseg.explain.groundtruth")


#: Classes that have a source stem (overlap does not).
STEM_CLASSES = ("speech", "noise", "music")


#: Explanations scored per segment: the proxy's, and the random references (``random_energy``: random
#: active components added until they keep as much of the segment's energy as the explanation).
KINDS = ("explanation", "random", "random_active", "random_energy")

#: Energy below this (sum of squared samples) counts as silence.
SILENT = 1e-10

METRICS = ("sisdri", "sisdr", "share", "kept")

__all__ = ["ACTIVE", "KINDS", "STEM_CLASSES", "si_sdr", "stem_band", "band_share", "segment_scores",
           "groundtruth_rows", "write_groundtruth", "provenance_path", "groundtruth_summary",
           "groundtruth_table", "plot_groundtruth", "stem_path"]


# ----------------------------------------------------------------------------------------------- scores

def si_sdr(estimate, reference, eps: float = 1e-8) -> float:
    """Scale-invariant SDR (dB) of ``estimate`` against ``reference`` (1-D, same length, zero-meaned here):
    ``10 log10(|α s|² / (|x - α s|² + eps) + eps)`` with ``α = <x, s> / |s|²``. A signal against itself
    gets a very high value (about 100 dB for audio-level energies), silence about ``10 log10(eps)``."""
    x = np.asarray(estimate, dtype=np.float64)
    s = np.asarray(reference, dtype=np.float64)
    if x.shape != s.shape or x.ndim != 1:
        raise ValueError(f"si_sdr needs two 1-D signals of the same length, got {x.shape} and {s.shape}")
    x = x - x.mean()
    s = s - s.mean()
    ss = _dot(s, s)
    alpha = _dot(x, s) / ss if ss > 0 else 0.0
    target = alpha * s
    noise = x - target
    return float(10.0 * np.log10(_dot(target, target) / (_dot(noise, noise) + eps) + eps))


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    # not np.dot / `@`: on a busy machine the threaded BLAS call took milliseconds for 32000 samples
    return float(np.sum(a * b))


def _bin_energy(samples, n_fft: int, win_length: int) -> np.ndarray:
    """``|STFT|²`` of ``samples`` summed over frames: (F,), on the pipeline's frame grid."""
    import torch

    from proxyseg.dsp import stft

    spec = stft(torch.as_tensor(np.ascontiguousarray(samples, dtype=np.float64)), n_fft=n_fft,
                win_length=win_length)
    return (spec.real.square() + spec.imag.square()).sum(dim=-1).numpy()


def stem_band(energy, share: float = 0.9) -> np.ndarray:
    """Boolean (F,): the smallest set of bins holding at least ``share`` of ``energy`` (bins ranked by
    energy, ties in bin order). All False when the energy is zero."""
    e = np.asarray(energy, dtype=np.float64)
    if not 0.0 < share <= 1.0:
        raise ValueError(f"energy share must be in (0, 1], got {share}")
    band = np.zeros(e.shape, bool)
    total = float(e.sum())
    if total <= 0:
        return band
    order = np.argsort(-e, kind="stable")
    cum = np.cumsum(e[order])
    n = int(np.searchsorted(cum, share * total * (1 - 1e-12), side="left")) + 1
    band[order[:min(n, e.size)]] = True
    return band


def band_share(energy, band) -> float:
    """Share of ``energy`` (F,) inside ``band`` (boolean F,); NaN for a silent signal."""
    e = np.asarray(energy, dtype=np.float64)
    total = float(e.sum())
    return float(e[np.asarray(band, bool)].sum() / total) if total > 0 else float("nan")


def segment_scores(candidate, mixture, stem, band, n_fft: int, win_length: int) -> dict:
    """``sisdr``, ``sisdri`` (vs the mixture), ``share`` (energy inside ``band``) and ``kept`` (energy of the
    candidate over the mixture's) of one candidate explanation."""
    c = np.asarray(candidate, dtype=np.float64)
    m = np.asarray(mixture, dtype=np.float64)
    s = si_sdr(c, stem)
    return {"sisdr": s, "sisdri": s - si_sdr(m, stem),
            "share": band_share(_bin_energy(c, n_fft, win_length), band),
            "kept": _dot(c, c) / max(_dot(m, m), SILENT)}


# ------------------------------------------------------------------------------------------------ inputs

def stem_path(stems_dir, uri: str, name: str) -> Path:
    """Where the demo corpus keeps the stem of class ``name`` of ``uri``."""
    return Path(stems_dir) / uri / f"{name}.wav"


def _read_stem(stems_dir, uri: str, name: str, length: int) -> np.ndarray:
    path = stem_path(stems_dir, uri, name)
    if not path.is_file():
        raise InputError(path, f"no {name} stem for {uri}: ground truth needs stems/<uri>/<class>.wav for every "
                               "scored test file (written by proxyseg demo-corpus for the test split); rebuild "
                               "the demo corpus, or leave this corpus out of the ground-truth items")
    try:
        x, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises several types
        raise InputError(path, f"cannot read stem ({exc})") from exc
    if rate != SAMPLE_RATE or x.shape[1] != 1:
        raise InputError(path, f"a stem must be 16 kHz mono, got {rate} Hz with {x.shape[1]} channel(s)")
    if x.shape[0] != length:
        raise InputError(path, f"stem has {x.shape[0]} samples but the audio of {uri} has {length} at 16 kHz "
                               "(load_audio); stems and audio come from different builds: rebuild the corpus")
    return x[:, 0]


def _read_manifest(path) -> dict[str, str]:
    try:
        table = pd.read_csv(path, sep="\t")
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputError(path, f"cannot read manifest ({exc})") from exc
    if not {"uri", "audio"} <= set(table.columns):
        raise InputError(path, "manifest lacks the columns uri and audio; rerun harmonise")
    return dict(zip(table["uri"].astype(str), table["audio"].astype(str)))


def _random_sets(n: int, z: np.ndarray, rng: np.random.Generator, draws: int) -> dict[str, list[np.ndarray]]:
    K = z.shape[0]
    active = np.flatnonzero(z > ACTIVE)
    return {"random": [rng.choice(K, size=n, replace=False) for _ in range(draws)],
            "random_active": [rng.choice(active, size=min(n, active.size), replace=False)
                              for _ in range(draws)] if active.size else []}


def _kept_energy(W, H, comps, power: np.ndarray) -> float:
    """Share of the segment's STFT energy (``power`` (F, T)) that the soft mask of ``comps`` keeps."""
    m = ex.explanation_mask(W, H, comps)[:, :power.shape[1]]
    return float((np.square(m) * power).sum() / max(power.sum(), SILENT))


def _energy_matched_sets(W, H, target: float, power: np.ndarray, rng: np.random.Generator, draws: int,
                         eps: float = 1e-8) -> list[np.ndarray]:
    """``draws`` random orders of the active components, each cut at the shortest prefix whose mask keeps at
    least ``target`` of the segment's energy (all active ones if none reaches it). The mask of a prefix is
    grown one component at a time (the same ``M`` as :func:`proxyseg.explain.relevance.explanation_mask`)."""
    active = np.flatnonzero(H.mean(axis=1) > ACTIVE)
    T = power.shape[1]
    Wp, Hp = np.maximum(W, 0.0), H[:, :T]
    full = Wp @ Hp + eps
    total = max(float(power.sum()), SILENT)
    out = []
    for _ in range(draws if active.size else 0):
        order = rng.permutation(active)
        part = np.zeros_like(full)
        n = order.size
        for i, k in enumerate(order):
            part += np.outer(Wp[:, k], Hp[k])
            if float((np.square(part / full) * power).sum()) / total >= target:
                n = i + 1
                break
        out.append(order[:n])
    return out


# -------------------------------------------------------------------------------------------------- rows

def _one_blas_thread():
    """BLAS on one thread: the products here are small, and a threaded BLAS on a busy machine spent
    milliseconds per call (threadpoolctl comes with scikit-learn; without it, nothing changes)."""
    import contextlib

    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def groundtruth_rows(checkpoint, items, settings: Groundtruth | dict | None = None, seed: int = 0, system: str = "",
                     explain: Explain | dict | None = None, n_fft: int | None = None,
                     win_length: int | None = None) -> pd.DataFrame:
    """One row per (corpus, class, segment) of the scored classes (speech, noise, music).

    ``items``: ``(corpus, inference.h5, spectrograms.h5, targets.h5, manifest.tsv, stems_dir)`` of the
    test split. Columns: ``system, corpus, class, uri, start`` (s), ``n_relevant, no_relevant,
    silent_stem, stem_energy`` (the stem's share of the segment's energy), ``band_bins`` (fraction of the
    bins in the stem's band), ``share_stem, share_mixture``, ``sisdr_mixture`` and for each kind of
    :data:`KINDS` ``sisdr_<kind>, sisdri_<kind>, share_<kind>, kept_<kind>``. ``explain``: the explain
    settings (``tau`` makes the explanations); ``n_fft``/``win_length``: None takes the spectrogram cache's.
    """
    # BLAS on one thread (see _one_blas_thread)
    with _one_blas_thread():
        return _groundtruth_rows(checkpoint, items, settings, seed, system, explain, n_fft, win_length)


def _groundtruth_rows(checkpoint, items, settings, seed: int, system: str, explain, n_fft_setting: int | None,
                      win_length_setting: int | None) -> pd.DataFrame:
    """The rows of :func:`groundtruth_rows` (BLAS threads limited by the caller)."""
    import torch

    from proxyseg.dsp import stft
    from proxyseg.proxy.model import load_proxy

    s = Groundtruth.parse(settings)
    tau, share, draws = Explain.parse(explain).tau, s.energy_share, s.draws
    frames = int(round(s["segment_seconds"] * FRAME_RATE))
    length = HOP * (frames - 1) + WIN
    model, _ = load_proxy(checkpoint)
    theta = model.theta.weight.detach().double().numpy()[:, :, 0]
    W = model.W.detach().double().numpy()
    if (W < 0).any():
        log.warning("%s: the dictionary has negative entries (learned_random): the masks use ReLU(W)", checkpoint)
    W = np.maximum(W, 0.0)
    rows = []
    for item in items:
        if len(item) != 6:
            raise InputError(None, "ground-truth items are (CORPUS, INFERENCE.h5, SPECTROGRAMS.h5, TARGETS.h5, "
                                   f"MANIFEST.tsv, STEMS_DIR), got {len(item)} values")
        corpus, infer_h5, spec_h5, targets_h5, manifest, stems_dir = item
        if not Path(stems_dir).is_dir():
            raise InputError(stems_dir, "stems folder not found: ground truth needs the class stems that "
                                        "proxyseg demo-corpus writes for the test split (stems/<uri>/<class>.wav)")
        audio_of = _read_manifest(manifest)
        with h5py.File(spec_h5, "r") as sp:
            n_fft = int(n_fft_setting if n_fft_setting is not None else sp.attrs.get("n_fft", 512))
            win_length = int(win_length_setting if win_length_setting is not None else sp.attrs.get("win_length", 400))
        if n_fft // 2 + 1 != W.shape[0]:
            raise InputError(spec_h5, f"n_fft {n_fft} gives {n_fft // 2 + 1} frequency bins but the proxy's "
                                      f"dictionary has {W.shape[0]}; pass the proxy's spectrogram settings")
        rng = np.random.default_rng(seed)
        with h5py.File(targets_h5, "r") as t:
            targets = {uri: t[uri][()] for uri in t}
        chosen = ex.select_segments_across(targets, frames, int(s["max_segments"]), rng=rng)
        work = sorted((uri, CLASSES.index(name), start) for name in STEM_CLASSES for uri, start in chosen[name])
        loaded_uri, mixture, stems = None, None, {}
        with h5py.File(infer_h5, "r") as inf:
            for uri, c, start in work:
                name = CLASSES[c]
                if uri not in inf or "H" not in inf[uri]:
                    raise InputError(infer_h5, f"no activations {uri}/H in this inference file")
                H = inf[uri]["H"][start:start + frames].astype(np.float64).T
                if H.shape[1] < frames:
                    continue
                if uri != loaded_uri:
                    if uri not in audio_of:
                        raise InputError(manifest, f"{uri} (in {targets_h5}) is not in the manifest")
                    mixture = load_audio(audio_of[uri]).astype(np.float64)
                    loaded_uri, stems = uri, {}
                if name not in stems:
                    stems[name] = _read_stem(stems_dir, uri, name, mixture.shape[0]).astype(np.float64)
                a = HOP * start
                if a + length > mixture.shape[0]:
                    continue
                mix_seg, stem_seg = mixture[a:a + length], stems[name][a:a + length]
                r = ex.local_relevance(H, theta)[:, c]
                relevant = np.flatnonzero(r > tau)
                stem_e = _dot(stem_seg, stem_seg)
                row = {"system": system, "corpus": corpus, "class": name, "uri": uri, "start": start / FRAME_RATE,
                       "n_relevant": int(relevant.size), "no_relevant": relevant.size == 0,
                       "silent_stem": stem_e <= SILENT,
                       "stem_energy": stem_e / max(_dot(mix_seg, mix_seg), SILENT)}
                if row["no_relevant"] or row["silent_stem"]:
                    rows.append(row)
                    continue
                stem_bins = _bin_energy(stem_seg, n_fft, win_length)
                band = stem_band(stem_bins, share)
                row.update({"band_bins": float(band.mean()), "share_stem": band_share(stem_bins, band),
                            "share_mixture": band_share(_bin_energy(mix_seg, n_fft, win_length), band),
                            "sisdr_mixture": si_sdr(mix_seg, stem_seg)})
                sets = {"explanation": [relevant], **_random_sets(relevant.size, H.mean(axis=1), rng, draws)}
                power = stft(torch.from_numpy(mix_seg.astype(np.float32)), n_fft=n_fft,
                             win_length=win_length).abs().square().double().numpy()
                sets["random_energy"] = _energy_matched_sets(W, H, _kept_energy(W, H, relevant, power), power, rng,
                                                             draws)
                for kind in KINDS:
                    scores = [segment_scores(ex.masked_audio(mix_seg.astype(np.float32),
                                                             ex.explanation_mask(W, H, comps), n_fft, win_length),
                                             mix_seg, stem_seg, band, n_fft, win_length)
                              for comps in sets.get(kind, [])]
                    for metric in METRICS:
                        row[f"{metric}_{kind}"] = (float(np.mean([sc[metric] for sc in scores]))
                                                   if scores else float("nan"))
                rows.append(row)
    columns = ["system", "corpus", "class", "uri", "start", "n_relevant", "no_relevant", "silent_stem",
               "stem_energy", "band_bins", "share_stem", "share_mixture", "sisdr_mixture",
               *[f"{m}_{k}" for k in KINDS for m in METRICS]]
    return pd.DataFrame(rows, columns=columns)


def write_groundtruth(checkpoint, items, out_tsv, settings: Groundtruth | dict | None = None, seed: int = 0,
                      system: str = "", explain: Explain | dict | None = None) -> pd.DataFrame:
    """:func:`groundtruth_rows` written to ``out_tsv`` (atomically) with its provenance beside it
    (``<out_tsv without .tsv>.provenance.json``: settings as used, inputs, seed, versions, rows, seconds)."""
    import time

    from proxyseg.core.atomic import atomic_open
    from proxyseg.core.provenance import provenance_json
    from proxyseg.core.tables import write_table

    t0 = time.perf_counter()
    rows = groundtruth_rows(checkpoint, items, settings, seed, system, explain)
    seconds = time.perf_counter() - t0
    scored = int((~rows["no_relevant"].astype(bool) & ~rows["silent_stem"].astype(bool)).sum()) if len(rows) else 0
    write_table(rows, out_tsv)
    record = provenance_json(step="groundtruth", system=system, checkpoint=str(checkpoint),
                             items=[[str(v) for v in item] for item in items],
                             settings=Groundtruth.parse(settings),
                             explain={"tau": Explain.parse(explain).tau}, seed=int(seed), rows=len(rows), scored=scored,
                             seconds=round(seconds, 2))
    with atomic_open(provenance_path(out_tsv)) as f:
        f.write(record + "\n")
    log.info("%s: %d segments (%d scored) in %.1f s", system or checkpoint, len(rows), scored, seconds)
    return rows


def provenance_path(out_tsv) -> Path:
    """``rows.tsv`` -> ``rows.provenance.json`` (beside it)."""
    out = Path(out_tsv)
    return out.with_name((out.name[:-4] if out.name.endswith(".tsv") else out.name) + ".provenance.json")


# --------------------------------------------------------------------------------------- summary, figure

def _bool(col: pd.Series) -> pd.Series:
    return col.map(lambda v: str(v).strip().lower() in ("true", "1", "1.0")).astype(bool)


def groundtruth_summary(rows: pd.DataFrame) -> pd.DataFrame:
    """Per system and class (over every corpus of the split): counts and mean scores.

    ``segments``: scored segments; ``no_relevant`` / ``silent_stem``: segments left out; means of
    ``n_relevant``, ``stem_energy``, ``band_bins``, the shares and every ``<metric>_<kind>``;
    ``beats_random`` / ``beats_random_active``: share of segments whose explanation has a higher SI-SDR
    improvement than the random reference (mean over draws).
    """
    out = []
    if rows.empty:
        return pd.DataFrame(out)
    rows = rows.copy()
    for flag in ("no_relevant", "silent_stem"):
        rows[flag] = _bool(rows[flag])
    order = {c: i for i, c in enumerate(CLASSES)}
    groups = sorted(rows.groupby(["system", "class"], sort=False), key=lambda g: (g[0][0], order.get(g[0][1], 9)))
    means = ["n_relevant", "stem_energy", "band_bins", "share_stem", "share_mixture", "sisdr_mixture",
             *[f"{m}_{k}" for k in KINDS for m in METRICS]]
    for (system, cls), g in groups:
        ok = g[~g["no_relevant"] & ~g["silent_stem"]]
        rec = {"system": system, "class": cls, "corpora": ",".join(dict.fromkeys(g["corpus"].astype(str))),
               "segments": len(ok), "no_relevant": int(g["no_relevant"].sum()),
               "silent_stem": int(g["silent_stem"].sum())}
        for col in means:
            vals = pd.to_numeric(ok[col], errors="coerce") if col in ok else pd.Series(dtype=float)
            rec[col] = float(vals.mean()) if vals.notna().any() else np.nan
        for kind in ("random", "random_active", "random_energy"):
            if f"sisdri_{kind}" not in ok:
                continue
            both = ok[["sisdri_explanation", f"sisdri_{kind}"]].apply(pd.to_numeric, errors="coerce").dropna()
            rec[f"beats_{kind}"] = (float((both["sisdri_explanation"] > both[f"sisdri_{kind}"]).mean())
                                    if len(both) else np.nan)
        out.append(rec)
    return pd.DataFrame(out)


def plot_groundtruth(path, summary: pd.DataFrame) -> None:
    """Two rows of grouped bars per system: the SI-SDR improvement of the explanation and of the random
    references per class; the band share of the mixture, the explanation and the references (black tick:
    the stem's own share)."""
    from proxyseg.core.figures import new_figure, save_figure

    systems = list(dict.fromkeys(summary["system"])) if len(summary) else [""]
    fig = new_figure(figsize=(4.4 * len(systems), 6.8))
    axes = np.asarray(fig.subplots(2, len(systems), squeeze=False, sharey="row"))
    colors = {"mixture": "tab:blue", "explanation": "tab:red", "random": "tab:gray", "random_active": "tab:olive",
              "random_energy": "tab:purple"}
    x = np.arange(len(STEM_CLASSES))
    for j, system in enumerate(systems):
        g = (summary[summary["system"] == system].set_index("class").reindex(list(STEM_CLASSES))
             if len(summary) else pd.DataFrame(index=list(STEM_CLASSES)))
        n = g["segments"].fillna(0).astype(int) if "segments" in g else pd.Series(0, index=g.index)
        ax = axes[0, j]
        for i, kind in enumerate(KINDS):
            vals = g[f"sisdri_{kind}"] if f"sisdri_{kind}" in g else pd.Series(np.nan, index=g.index)
            ax.bar(x + (i - 1.5) * 0.2, vals.fillna(0.0), width=0.2, color=colors[kind], label=kind)
        ax.axhline(0, color="k", lw=0.6)
        ax.set_xticks(x, [f"{c}\n(n={k})" for c, k in zip(STEM_CLASSES, n)], fontsize=8)
        ax.set_title(system, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
        ax = axes[1, j]
        for i, kind in enumerate(("mixture",) + KINDS):
            col = f"share_{kind}"
            vals = g[col] if col in g else pd.Series(np.nan, index=g.index)
            ax.bar(x + (i - 2) * 0.16, vals.fillna(0.0), width=0.16, color=colors[kind], label=kind)
        if "share_stem" in g:
            ax.scatter(x, g["share_stem"].fillna(np.nan), marker="_", s=400, color="k", label="stem", zorder=3)
        ax.set_ylim(0, 1.05)
        ax.set_xticks(x, list(STEM_CLASSES), fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    axes[0, 0].set_ylabel("SI-SDR improvement over the mixture (dB)")
    axes[1, 0].set_ylabel("share of energy in the stem's band")
    for ax in axes[:, -1]:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle("Ground truth: listenable explanations vs the true class stems (demo test split)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, Path(path), cropped=True)


_TABLE_NOTE = """Listenable explanations scored against the true class stems of the synthetic test files
(proxyseg.explain.groundtruth). sisdri_*: SI-SDR improvement (dB) over the mixture, i.e. SI-SDR(candidate, stem) -
SI-SDR(mixture, stem); share_*: share of the candidate's energy inside the stem's band (the fewest STFT bins
holding {share} of the stem's energy; share_stem is the stem's own, band_bins the fraction of bins in the
band); kept_*: candidate energy / mixture energy. explanation: the relevant components' mask (relevance >
tau); random / random_active: the same number of components drawn from all / from the active ones (mean of
the draws); random_energy: active components in a random order until they keep as much energy as the
explanation (energy-matched); share_mixture / sisdr_mixture: the mixture itself; beats_*: share of segments where the explanation's SI-SDR improvement is the higher.
segments: scored segments; no_relevant, silent_stem: segments left out.

"""


def groundtruth_table(inputs, out_tsv, out_md, out_png) -> pd.DataFrame:
    """Gather per-proxy row TSVs into the summary (TSV, Markdown with a legend) and the figure."""
    import json

    from proxyseg.core.atomic import atomic_open
    from proxyseg.core.tables import write_table

    frames, shares = [], set()
    for path in inputs:
        try:
            frames.append(pd.read_csv(path, sep="\t"))
        except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            raise InputError(path, f"cannot read ground-truth rows ({exc}); rerun proxyseg groundtruth") from exc
        missing = {"system", "class", "corpus", "no_relevant", "silent_stem"} - set(frames[-1].columns)
        if missing:
            raise InputError(path, f"not a ground-truth rows table: lacks {sorted(missing)}")
        prov = provenance_path(path)
        if prov.is_file():
            try:
                shares.add(json.loads(prov.read_text())["settings"]["settings"]["energy_share"])
            except (ValueError, KeyError, TypeError):
                pass
    summary = groundtruth_summary(pd.concat(frames, ignore_index=True))
    write_table(summary, out_tsv)
    share = ", ".join(f"{v:g}" for v in sorted(shares)) if shares else "energy_share"
    with atomic_open(out_md) as f:
        f.write(_TABLE_NOTE.format(share=share))
        f.write((summary.to_markdown(index=False, floatfmt=".3g") if len(summary) else "(no segments)") + "\n")
    plot_groundtruth(out_png, summary)
    return summary
