"""Faithfulness of the proxy's explanations (METHOD §7): does the model the proxy explains (the judge: the
demo teacher or a black-box segmenter) change its decision when the part of the audio that the
explanation names is removed, more than when other parts of the same energy are removed?

A test that can fail (docs/method.md, "Judging explanations"):

* **Units.** For a segment where the judge decided class c, the judge's mean **logit** drop over the frames
  it decided and the **flip rate** (share of those frames that fall below the threshold); probability
  drop as a third column.
* **Removal that removes.** Hard time-frequency masks: ranking the segment's STFT bins, the first bins up
  to a share of the segment's energy are zeroed (``refill: floor`` puts the segment's noise floor there
  instead, as a check); the ISTFT (original phase) goes back to the judge. For an ordering of atoms, the
  bins are ranked by the first k at which the k first atoms explain >= 50 % of the bin (of ``W⁺H``).
* **Curves on an energy axis.** Deletion (the ranked bins removed) and insertion (only the ranked bins
  kept, the rest of the segment silent) at every level of ``energy_levels``, for the explanation (atoms
  in the order of their relevance, positive ones first) and for baselines ranked the same way: random
  *active* atoms (``draws`` orders), the atoms relevant to the judge's other classes, the loudest bins,
  and the judge's own evidence (signed gradient x input for the demo teacher, occlusion for a black box);
  the true stem removed (an oracle) where the corpus keeps its sources (the demo's test files).
* **In context.** The removal is confined to the segment, but the judge hears its own window around it
  (:meth:`proxyseg.explain.judges.Judge.context`).
* **Sanity gate.** The deletion at 50 % energy is also fed to the proxy: its own logit drop as a share of
  the drop of removing the same atoms from its H (``proxy_sanity``); a class whose median is below 0.5 is
  marked not judgeable.
* **L-MAC's figures** (Paissan et al. 2024, in their definitions): AI, AD, AG on the explanation kept
  (log-power mask in), FF on it removed (mask out), Fid-In as decision agreement at the threshold; for the
  paper's soft explanation mask (relevance > ``explain.tau``) and, beside it, a signed-saliency mask of
  equal sparsity.
* **Sampling and statistics.** A seeded draw of ``segments`` per class, round-robin across files; per
  segment paired differences; 95 % bootstrap intervals (:func:`faithfulness_summary`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from proxyseg.core.audio import load_audio
from proxyseg.core.frames import CLASSES, FRAME_RATE, HOP, SAMPLE_RATE, WIN
from proxyseg.explain import relevance as ex
from proxyseg.explain.judges import BlackBoxJudge, Judge, TeacherJudge
from proxyseg.explain.relevance import ACTIVE
from proxyseg.settings import Explain, Faithfulness, Scoring

log = logging.getLogger("proxyseg.explain.faithfulness")

#: Methods ranked on the energy axis; ``random_active`` has ``draws`` orders.
METHODS = ("explanation", "random_active", "other_class", "loudest", "saliency")
DIRECTIONS = ("deletion", "insertion")
#: Metrics of ``tables/faithfulness_summary.tsv`` (besides the ``saliency_*`` L-MAC twins).
LMAC = ("AI", "AD", "AG", "FF", "fid_in")
SUMMARY_COLUMNS = ["system", "judge", "class", "metric", "value", "ci_low", "ci_high", "segments"]

__all__ = ["ACTIVE", "METHODS", "BlackBoxJudge", "Judge", "TeacherJudge", "atom_bin_order", "map_bin_order",
           "occlusion_relevance", "prefix_mask",
           "judge_baselines", "write_judge_baselines", "read_judge_baselines",
           "draw_segments", "faithfulness_rows", "faithfulness_summary", "faithfulness_table", "bootstrap", "verdicts"]


# ----------------------------------------------------------------------------------------- rankings

def atom_bin_order(W: np.ndarray, H: np.ndarray, atoms, claim: float = 0.5, eps: float = 1e-8):
    """Bins (flat indices of (F, T)) in the order an ordering of ``atoms`` claims them: bin b gets key k,
    the first k at which atoms[:k] explain >= ``claim`` of ``(W⁺H)[b]``; bins never claimed come after, by
    the share the atoms explain. Returns ``(order, key)``, key (F*T,) with ``len(atoms) + 1`` unclaimed."""
    Wp = np.maximum(np.asarray(W, np.float64), 0.0)
    H = np.asarray(H, np.float64)
    full = Wp @ H + eps
    cum = np.zeros_like(full)
    key = np.full(full.shape, len(atoms) + 1, dtype=np.int64)
    at = np.zeros_like(full)
    for i, k in enumerate(atoms):
        cum += np.outer(Wp[:, k], H[k]) / full
        new = (cum >= claim) & (key > len(atoms))
        key[new] = i + 1
        at[new] = cum[new]
    second = np.where(key > len(atoms), cum, at)
    order = np.lexsort((-second.ravel(), key.ravel()))
    return order, key.ravel()


def map_bin_order(W: np.ndarray, H: np.ndarray, scores: np.ndarray, eps: float = 1e-8):
    """Bins (flat indices of (F, T)) ranked by the explanation's time-frequency map
    ``sum_k scores[k] (w_k h_k)[b] / (W⁺H)[b]``: each bin carries the relevance of the atoms that make it, in
    proportion to their share of it (``faithfulness.bins: map``); returns ``(order, None)``."""
    Wp = np.maximum(np.asarray(W, np.float64), 0.0)
    H = np.asarray(H, np.float64)
    s = (Wp * np.asarray(scores, np.float64)[None, :]) @ H / (Wp @ H + eps)
    return np.argsort(-s.ravel(), kind="stable"), None


def prefix_mask(order: np.ndarray, energy: np.ndarray, level: float) -> tuple[np.ndarray, float, int]:
    """Boolean (F, T) mask of the first bins of ``order`` whose energy reaches ``level`` of the total (the
    bin that crosses it included); returns ``(mask, energy share removed, number of bins)``."""
    e = energy.ravel()[order]
    total = float(e.sum())
    mask = np.zeros(energy.size, dtype=bool)
    if total <= 0:
        return mask.reshape(energy.shape), 0.0, 0
    cum = np.cumsum(e) / total
    n = min(int(np.searchsorted(cum, level - 1e-12, side="left")) + 1, e.size)
    mask[order[:n]] = True
    return mask.reshape(energy.shape), float(cum[n - 1]), n


# ----------------------------------------------------------------------------------------- sampling

def draw_segments(targets_by_file, segment_frames: int, per_class: int, rng: np.random.Generator,
                  classes=CLASSES) -> dict[str, list[tuple[str, int]]]:
    """Up to ``per_class`` windows per class where the class is decided on >= half the frames, drawn
    round-robin across files in a seeded random file order (each file's windows shuffled): never the first
    N of a sorted list, and no file takes every slot while others have candidates."""
    cands = {uri: ex.candidate_segments(t, segment_frames) for uri, t in sorted(targets_by_file.items())}
    out = {}
    for name in CLASSES:
        if name not in classes:
            out[name] = []
            continue
        files = [u for u in cands if cands[u][name].size]
        queues = {u: list(rng.permutation(cands[u][name])) for u in files}
        order = [files[i] for i in rng.permutation(len(files))]
        picked: list[tuple[str, int]] = []
        while len(picked) < per_class and any(queues[u] for u in order):
            for u in order:
                if queues[u] and len(picked) < per_class:
                    picked.append((u, int(queues[u].pop())))
        out[name] = sorted(picked)
    return out


# ------------------------------------------------------------------------------------------ one segment

def _logit(p: float) -> float:
    return float(np.log(p) - np.log1p(-p))


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


class _Proxy:
    """The explained proxy, for the sanity gate: its logits on a segment's input, and Θ."""

    def __init__(self, checkpoint=None, model=None, input: str = "spectrogram"):
        """From a checkpoint file, or from a loaded ``model`` whose ``input`` is given (a CPU copy is kept)."""
        import copy

        if checkpoint is not None:
            from proxyseg.proxy.model import load_proxy

            model, ckpt = load_proxy(checkpoint)
            input = ckpt["hparams"].get("input", "wavlm")
        self.model = copy.deepcopy(model).cpu().eval() if checkpoint is None else model
        self.input = input
        self.theta = self.model.theta.weight.detach().double().numpy()[:, :, 0]
        self.W = np.maximum(self.model.W.detach().double().numpy(), 0.0)

    def run(self, inp):
        """``inp`` (B, C_in, T) torch -> (logits (B, 4, T), H (B, K, T)) numpy float64."""
        import torch

        with torch.no_grad():
            out = self.model(inp.float())
        return out["logits"].double().numpy(), out["H"].double().numpy()


def occlusion_relevance(proxy: _Proxy, judge: Judge, spec, seg: slice, c: int, decided: np.ndarray, gain: float,
                        length: int, n_fft: int, win_length: int, batch: int = 32):
    """Relevance exact for the whole proxy (``explain.relevance: occlusion``), where the paper's
    ``z_k Theta[c, k]`` reads Theta alone: each atom active in the segment is removed from the proxy's input in
    the domain the dictionary models (its share ``w_k h_k / (W H)`` of the log-power, inside the segment),
    and the whole proxy (Psi then Theta) runs again on the clip in context. ``r[k, c']`` is the mean drop of
    the class logit (over the judge's decided frames for ``c``, the segment's frames for the others), divided
    per class by its maximum like :func:`~proxyseg.explain.relevance.local_relevance`. Returns
    ``(r (K, C), H (K, T_seg))``, H the proxy's own activations on this input."""
    import torch

    from proxyseg.dsp import istft

    logpow = torch.log1p((spec.abs().double() * float(gain)).square())  # the spectrogram proxies' input (F, T)

    def inputs(keeps):  # the proxy's input with each atom's share removed inside the segment
        if proxy.input == "spectrogram":
            x = logpow[None].repeat(len(keeps), 1, 1)
            for i, keep in enumerate(keeps):
                x[i][:, seg] = logpow[:, seg] * torch.from_numpy(keep)
            return x
        lp = logpow[:, seg].numpy()  # the same removal as a magnitude gain, |X'| = sqrt(expm1(L keep)) / gain
        power = np.expm1(lp)
        gains = [np.where(power > 0, np.sqrt(np.expm1(lp * keep) / np.where(power > 0, power, 1.0)), 1.0)
                 for keep in keeps]
        wavs = istft(_with_gains(spec, seg, gains), length=length, n_fft=n_fft, win_length=win_length).numpy()
        feats = judge.features(wavs)
        if feats is None:
            raise ValueError("relevance by occlusion of a proxy on WavLM features needs the demo teacher as judge "
                             "(its WavLM); use explain.relevance: linear")
        return feats

    logits0, H0 = proxy.run(inputs([np.ones((spec.shape[0], seg.stop - seg.start))]))  # nothing removed
    H = H0[0][:, seg]
    raw = np.zeros((H.shape[0], logits0.shape[1]))
    active = np.flatnonzero(H.mean(axis=1) > ACTIVE)
    full = proxy.W @ H + 1e-8
    frames = [np.asarray(decided, bool) if i == c else np.ones(H.shape[1], bool) for i in range(raw.shape[1])]
    for start in range(0, active.size, batch):
        ks = active[start:start + batch]
        lg, _ = proxy.run(inputs([1.0 - np.outer(proxy.W[:, k], H[k]) / full for k in ks]))
        for j, k in enumerate(ks):
            d = logits0[0][:, seg] - lg[j][:, seg]
            raw[k] = [d[i][frames[i]].mean() for i in range(raw.shape[1])]
    return ex._normalise_by_max(raw, axis=0), H


#: Frequency bands (Hz) in which an explanation's spectral profile is reported (``band_<lo>_<hi>``).
BANDS = ((0, 250), (250, 500), (500, 1000), (1000, 2000), (2000, 4000), (4000, 8000))


def band_shares(W: np.ndarray, r: np.ndarray, n_fft: int) -> dict[str, float]:
    """The bands one explanation names: its profile ``P(f) = sum_k max(r_k, 0) w_k`` (METHOD §7's prototype
    projection, for one segment) as shares per band of :data:`BANDS` (NaN where no atom is relevant)."""
    from proxyseg.dsp import stft_frequencies

    P = np.maximum(np.asarray(W, np.float64), 0.0) @ np.maximum(np.asarray(r, np.float64), 0.0)
    f = stft_frequencies(n_fft)
    mass = np.array([P[(f >= lo) & ((f < hi) | (hi == BANDS[-1][1]))].sum() for lo, hi in BANDS])
    total = mass.sum()
    return {f"band_{lo}_{hi}": float(m / total) if total > 0 else np.nan for (lo, hi), m in zip(BANDS, mass)}


def segment_relevance(proxy: _Proxy, judge: Judge, spec, seg: slice, c: int, decided, gain: float, length: int,
                      n_fft: int, win_length: int, H: np.ndarray, relevance: str = "linear"):
    """``(r (K, C), H (K, T_seg))`` of one segment as ``explain.relevance`` says: ``linear`` reads the
    activations ``H`` given (the proxy's inference file), ``occlusion`` runs the proxy
    (:func:`occlusion_relevance`)."""
    if relevance == "occlusion":
        return occlusion_relevance(proxy, judge, spec, seg, c, decided, gain, length, n_fft, win_length)
    return ex.local_relevance(H, proxy.theta), H  # normalised by the class maximum


#: Removals that do not depend on the proxy, judged once per segment (:func:`judge_baselines`) and shared
#: by every proxy's job through ``scores/faithfulness/judge.h5``.
SHARED_METHODS = ("loudest", "saliency")


def _shared_variants(levels) -> list[tuple]:
    """The order of :func:`judge_baselines`' logits: the floor, each shared method x level x direction."""
    return [("floor",)] + [(m, float(lv), d) for m in SHARED_METHODS for lv in levels for d in DIRECTIONS]


def _fingerprint(x: np.ndarray, seg: slice, c: int, s, threshold: float, n_fft: int, win_length: int,
                 stem: np.ndarray | None) -> str:
    """What a shared judgement depends on besides the judge: the audio, the segment, the class, the settings."""
    import hashlib

    h = hashlib.sha1(np.ascontiguousarray(x, dtype=np.float32).tobytes())
    h.update(np.ascontiguousarray(stem if stem is not None else [], dtype=np.float32).tobytes())
    h.update(repr((seg.start, seg.stop, c, [float(v) for v in s.energy_levels], s.refill, float(threshold),
                   n_fft, win_length)).encode())
    return h.hexdigest()


def _stft_parts(x, n_fft: int, win_length: int, seg: slice):
    import torch

    from proxyseg.dsp import stft

    spec = stft(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), n_fft=n_fft, win_length=win_length)
    mag = spec.abs().double()
    return spec, mag, mag[:, seg].square().numpy()


def _removal(mag, seg: slice, refill: str):
    """The gain that removes a mask's bins: 0, or the segment's noise floor (``refill: floor``)."""
    if refill != "floor":
        return lambda mask: ~mask
    floor = np.quantile(mag[:, seg].numpy(), 0.1, axis=1, keepdims=True)
    fill = np.minimum(1.0, floor / np.maximum(mag[:, seg].numpy(), 1e-12))
    return lambda mask: np.where(mask, fill, 1.0)


def _with_gains(spec, seg: slice, gains_seg) -> "torch.Tensor":
    """``spec`` times each gain inside the segment (1 outside), stacked: (N, F, T)."""
    import torch

    out = torch.ones((len(gains_seg),) + tuple(spec.shape), dtype=torch.float64)
    for i, g in enumerate(gains_seg):
        out[i][:, seg] = torch.as_tensor(g, dtype=torch.float64)
    return spec[None] * out.to(spec.dtype)


def judge_baselines(judge: Judge, x: np.ndarray, seg: slice, c: int, s, threshold: float, n_fft: int,
                    win_length: int, stem: np.ndarray | None) -> dict:
    """The judge's part of one segment, the same for every proxy: its logits on the clip (``L0``), its own
    evidence (``saliency``, (F, T)), and its logits (N, T) on the removals of :func:`_shared_variants` and on
    the true stem removed (``oracle``; ``oracle_energy`` NaN when there is none), judged in one batch."""
    from proxyseg.dsp import istft

    spec, mag, energy = _stft_parts(x, n_fft, win_length, seg)
    base_wav = istft(spec[None], length=len(x), n_fft=n_fft, win_length=win_length).numpy()
    L0 = judge.logits(base_wav)[0, c, seg]
    out = {"fingerprint": _fingerprint(x, seg, c, s, threshold, n_fft, win_length, stem), "L0": L0}
    decided = L0 > _logit(threshold)
    if not decided.any():
        return out
    sal = judge.saliency(base_wav[0], c, seg, decided, n_fft, win_length)
    orders = {"loudest": np.argsort(-energy.ravel(), kind="stable"),
              "saliency": np.argsort(-sal.ravel(), kind="stable")}
    removed = _removal(mag, seg, s.refill)
    gains = []
    for v in _shared_variants(s.energy_levels):
        if v[0] == "floor":
            gains.append(np.zeros(energy.shape))
            continue
        mask = prefix_mask(orders[v[0]], energy, v[1])[0]
        gains.append(removed(mask) if v[2] == "deletion" else mask.astype(np.float64))
    specs = _with_gains(spec, seg, gains)
    oracle_energy = np.nan
    if stem is not None:
        stem_spec = _stft_parts(stem, n_fft, win_length, seg)[0]
        share = float(stem_spec[:, seg].abs().square().sum().item() / max(energy.sum(), 1e-20))
        if share > 1e-4:  # a stem silent in the segment is no oracle
            oracle = spec.clone()
            oracle[:, seg] = spec[:, seg] - stem_spec[:, seg]
            specs = __import__("torch").cat([specs, oracle[None]])
            oracle_energy = min(1.0, share)
    wavs = istft(specs, length=len(x), n_fft=n_fft, win_length=win_length).numpy()
    out.update(saliency=sal, logits=judge.logits(wavs)[:, c, seg], oracle_energy=oracle_energy)
    return out


def _segment(judge: Judge, proxy: _Proxy, x: np.ndarray, seg: slice, c: int, H: np.ndarray, rng, s, e,
             threshold: float, n_fft: int, win_length: int, gain: float, stem: np.ndarray | None,
             shuffle: bool = False, shared: dict | None = None):
    """Every removal of one segment and class -> (curve rows, segment row), or None when the judge does not
    decide the class on any frame of the segment in context. The judge's part (:func:`judge_baselines`)
    comes from ``shared`` when its fingerprint matches, else it is computed here; the proxy's removals
    are judged in one batch."""
    import torch

    from proxyseg.dsp import istft

    thr = _logit(threshold)
    spec, mag, energy = _stft_parts(x, n_fft, win_length, seg)
    if spec.shape[0] != proxy.W.shape[0]:
        raise ValueError(f"the spectrogram settings (n_fft {n_fft}) give {spec.shape[0]} bins but the proxy's "
                         f"dictionary has {proxy.W.shape[0]}")
    if shared is None or shared.get("fingerprint") != _fingerprint(x, seg, c, s, threshold, n_fft, win_length, stem):
        shared = judge_baselines(judge, x, seg, c, s, threshold, n_fft, win_length, stem)
    T = seg.stop - seg.start
    H = H[:, :T]
    L0 = np.asarray(shared["L0"])
    decided = L0 > thr
    if not decided.any():
        return None
    sal = np.asarray(shared["saliency"])
    # --- rankings
    r_all, H = segment_relevance(proxy, judge, spec, seg, c, decided, gain, len(x), n_fft, win_length, H, e.relevance)
    r = r_all[:, c]
    if shuffle:  # the negative control: relevance shuffled across atoms must score as random
        r = r[rng.permutation(r.size)]
    positive = [int(k) for k in np.argsort(-r, kind="stable") if r[k] > 0]
    z = H.mean(axis=1)
    active = np.flatnonzero(z > ACTIVE)
    by_map = s.bins == "map"
    orders = {("explanation", 0): map_bin_order(proxy.W, H, r) if by_map else atom_bin_order(proxy.W, H, positive)}
    for d in range(int(s.draws)):
        if by_map:  # the same relevance values dealt to the active atoms at random
            dealt = np.zeros_like(r)
            dealt[active] = r[active][rng.permutation(active.size)]
            orders[("random_active", d)] = map_bin_order(proxy.W, H, dealt)
        else:
            orders[("random_active", d)] = atom_bin_order(proxy.W, H, [int(k) for k in rng.permutation(active)])
    others = [CLASSES.index(n) for n in judge.classes if CLASSES.index(n) != c]
    if others:
        r_other = r_all[:, others].max(axis=1)
        other_atoms = [int(k) for k in np.argsort(-r_other, kind="stable") if r_other[k] > 0]
        if other_atoms:
            orders[("other_class", 0)] = (map_bin_order(proxy.W, H, r_other) if by_map
                                          else atom_bin_order(proxy.W, H, other_atoms))
    flat = energy.ravel()
    orders[("loudest", 0)] = (np.argsort(-flat, kind="stable"), None)
    orders[("saliency", 0)] = (np.argsort(-sal.ravel(), kind="stable"), None)
    # --- variants: the proxy's gains inside the segment, judged here; the shared ones read from ``shared``
    shared_at = {v: i for i, v in enumerate(_shared_variants(s.energy_levels))}
    shared_logits = shared["logits"]
    gains, meta, judged = [], [], []

    def add(g_seg, info, key=None):
        if key is None:
            gains.append(g_seg)
            judged.append(len(meta))
        else:
            info["shared"] = shared_at[key]
        meta.append(info)

    removed = _removal(mag, seg, s.refill)
    add(None, {"kind": "floor"}, ("floor",))
    for (method, draw), (order, key) in orders.items():
        for level in s.energy_levels:
            mask, got, nbins = prefix_mask(order, energy, level)
            k = int(key[mask.ravel()].max()) if key is not None and mask.any() else -1
            base = {"method": method, "draw": draw, "level": level, "energy": got, "bins": nbins, "k": k}
            is_shared = method in SHARED_METHODS
            add(None if is_shared else removed(mask), {**base, "kind": "curve", "direction": "deletion", "mask": mask},
                (method, float(level), "deletion") if is_shared else None)
            add(None if is_shared else mask.astype(np.float64), {**base, "kind": "curve", "direction": "insertion"},
                (method, float(level), "insertion") if is_shared else None)
    # the paper's soft explanation (relevance > tau): removed in both mask domains (old columns), and
    # L-MAC's mask in / mask out in the log-power domain; a saliency mask of equal sparsity beside it
    rel = np.flatnonzero(r > e.tau)
    if rel.size:
        soft = ex.explanation_mask(proxy.W, H, rel)
        seg_mag = mag[:, seg] * float(gain)
        for domain in ("linear", "log"):
            g = ex.mask_gain(seg_mag, torch.from_numpy(1.0 - soft), domain).numpy()
            add(g, {"kind": "soft", "method": f"soft_{domain}", "energy": float((energy * (1 - g ** 2)).sum()
                                                                              / max(energy.sum(), 1e-20))})
        n_sal = max(1, int(round(soft.sum())))
        sal_mask = np.zeros(flat.size)
        sal_mask[np.argsort(-sal.ravel(), kind="stable")[:n_sal]] = 1.0
        sal_mask = sal_mask.reshape(energy.shape)
        for name, m in (("nmf", soft), ("saliency", sal_mask)):
            add(ex.mask_gain(seg_mag, torch.from_numpy(m), "log").numpy(), {"kind": "lmac_in", "method": name})
            add(ex.mask_gain(seg_mag, torch.from_numpy(1.0 - m), "log").numpy(), {"kind": "lmac_out", "method": name})
    if np.isfinite(shared.get("oracle_energy", np.nan)):
        meta.append({"kind": "oracle", "energy": float(shared["oracle_energy"]), "shared": len(shared_at)})
    own = None
    if gains:
        wavs = istft(_with_gains(spec, seg, gains), length=len(x), n_fft=n_fft, win_length=win_length).numpy()
        own = judge.logits(wavs)[:, c, seg]
    at = {m: i for i, m in enumerate(judged)}
    L = np.stack([shared_logits[info["shared"]] if "shared" in info else own[at[n]]
                  for n, info in enumerate(meta)])[:, decided]  # (N, decided frames)
    l0 = L0[decided]
    p0 = _sigmoid(l0)

    def scores(lv):
        return {"logit_drop": float(np.mean(l0 - lv)), "flip_rate": float(np.mean(lv <= thr)),
                "prob_drop": float(np.mean(p0 - _sigmoid(lv)))}

    curves, seg_row = [], {"decided_frames": int(decided.sum()), "base_logit": float(l0.mean()),
                           "base_prob": float(p0.mean()), "n_positive": len(positive), "n_active": int(active.size),
                           "n_relevant": int(rel.size)}
    expl_del = {}
    for info, lv in zip(meta, L):
        kind = info["kind"]
        if kind == "floor":
            seg_row["floor_logit_drop"] = scores(lv)["logit_drop"]
        elif kind == "curve":
            row = {k: info[k] for k in ("method", "draw", "direction", "level", "energy", "bins", "k")}
            row.update(scores(lv))
            curves.append(row)
            if info["method"] == "explanation" and info["direction"] == "deletion":
                expl_del[info["level"]] = (info, lv)
        elif kind == "soft":
            sc = scores(lv)
            seg_row[f"{info['method']}_logit_drop"] = sc["logit_drop"]
            seg_row[f"{info['method']}_energy"] = info["energy"]
        elif kind in ("lmac_in", "lmac_out"):
            p = _sigmoid(lv)
            pre = "" if info["method"] == "nmf" else "saliency_"
            if kind == "lmac_in":
                pm, bm = float(p.mean()), float(p0.mean())
                seg_row[pre + "AI"] = 100.0 * float(pm > bm)
                seg_row[pre + "AD"] = 100.0 * max(0.0, bm - pm) / max(bm, 1e-12)
                seg_row[pre + "AG"] = 100.0 * max(0.0, pm - bm) / max(1.0 - bm, 1e-12)
                seg_row[pre + "fid_in"] = float(np.mean(lv > thr))
            else:
                seg_row[pre + "FF"] = float(p0.mean() - p.mean())
        elif kind == "oracle":
            sc = scores(lv)
            seg_row.update({"oracle_energy": info["energy"], "oracle_logit_drop": sc["logit_drop"],
                            "oracle_flip_rate": sc["flip_rate"]})
    # k to flip: the atoms behind the first level whose deletion flips >= half the decided frames
    flips = [(row["level"], row["k"]) for row in curves
             if row["method"] == "explanation" and row["direction"] == "deletion" and row["flip_rate"] >= 0.5]
    seg_row["k_to_flip"] = float(min(flips)[1]) if flips else np.nan
    seg_row.update(band_shares(proxy.W, r, n_fft))
    seg_row.update(_sanity(proxy, judge, spec, seg, c, positive, expl_del, decided, gain, len(x), n_fft, win_length,
                           H if by_map else None))
    return curves, seg_row


def _sanity(proxy: _Proxy, judge: Judge, spec, seg: slice, c: int, positive, expl_del, decided, gain, length: int,
            n_fft: int, win_length: int, H_map=None) -> dict:
    """The proxy's own logit drop when the explanation's deletion at 50 % energy (or the nearest level)
    is fed to it, as a share of the drop of removing the same atoms from its H; with ``H_map`` (the
    activations, ``faithfulness.bins: map``) of removing from each atom the share of its reconstruction
    that falls in the removed bins, ``Theta[c] (H * W^T mask / colsum W)``."""
    import torch

    from proxyseg.dsp import istft

    if not expl_del or not positive:
        return {"proxy_sanity": np.nan}
    level = min(expl_del, key=lambda v: abs(v - 0.5))
    info, _ = expl_del[level]
    k = min(len(positive), max(1, info["k"]))
    atoms = positive[:k]
    mask = info["mask"]
    masked = spec.clone()
    masked[:, seg] = spec[:, seg] * torch.from_numpy(~mask)
    if proxy.input == "spectrogram":
        both = torch.stack([spec[:, seg], masked[:, seg]]).abs().double() * float(gain)
        inp = torch.log1p(both.square())
    else:
        feats = judge.features(istft(torch.stack([spec, masked]), length=length, n_fft=n_fft,
                                     win_length=win_length).numpy())
        if feats is None:
            return {"proxy_sanity": np.nan}
        inp = feats[:, :, seg]
    logits, Hp = proxy.run(inp)
    input_drop = float(np.mean((logits[0, c] - logits[1, c])[decided]))
    if H_map is not None:
        frac = (proxy.W.T @ mask) / np.maximum(proxy.W.sum(axis=0), 1e-12)[:, None]  # (K, T_seg)
        h_drop = float(np.mean((proxy.theta[c] @ (Hp[0] * frac))[decided]))
    else:
        h_drop = float(np.mean((proxy.theta[c, atoms] @ Hp[0][atoms])[decided]))
    return {"proxy_input_drop": input_drop, "proxy_h_drop": h_drop,
            "proxy_sanity": input_drop / h_drop if h_drop > 1e-9 else np.nan}


# -------------------------------------------------------------------------------------------- the run

def _drawn(items, judge: Judge, s, rng):
    """The seeded draw of segments (the same for every proxy: it reads only where the judge decided each
    class) and, segment by segment, what judging one needs: ``(item index, corpus, class, uri, start, x, seg,
    stem, gain, n_fft, win_length, H or None)``; H is the proxy's activations when the item names them."""
    from proxyseg.explain.groundtruth import _read_manifest, stem_path

    frames = int(round(s.segment_seconds * FRAME_RATE))
    judge_classes = tuple(judge.classes)
    before, after = judge.context(s.segment_seconds)  # the judge's window around every segment
    targets = {}  # one draw per class over the files of every corpus (``segments`` per class in all)
    for i, item in enumerate(items):
        targets.update({(i, uri): t for uri, t in ex.read_targets(item[3]).items()})
    chosen = draw_segments(targets, frames, int(s.segments), rng, judge_classes)
    for name in judge_classes:
        n_files = len({key for key, _ in chosen[name]})
        log.info("%s: %d segments from %d files (%d asked)", name, len(chosen[name]), n_files, s.segments)
    for i, item in enumerate(items):
        corpus, infer_h5, spec_h5, targets_h5, manifest = item[:5]
        stems = item[5] if len(item) > 5 and item[5] not in (None, "", "-") else None
        audio = _read_manifest(manifest)
        inf = h5py.File(infer_h5, "r") if infer_h5 not in (None, "", "-") else None
        try:
            with h5py.File(spec_h5, "r") as sp:
                n_fft, win_length = int(sp.attrs.get("n_fft", 512)), int(sp.attrs.get("win_length", 400))
                for name in judge_classes:
                    for (j, uri), start in chosen[name]:
                        if j != i:
                            continue
                        H = None
                        if inf is not None:
                            H = inf[uri]["H"][start:start + frames].astype(np.float64).T
                            if H.shape[1] < frames:
                                continue
                        b = min(start, int(round(before * FRAME_RATE)))
                        first = start - b
                        n_after = int(round(after * FRAME_RATE))
                        t0 = first * HOP / SAMPLE_RATE
                        t1 = ((start + frames + n_after - 1) * HOP + WIN) / SAMPLE_RATE
                        x = load_audio(audio[uri], t0, t1)
                        seg = slice(b, b + frames)
                        if (len(x) - WIN) // HOP + 1 < seg.stop:
                            continue
                        stem = None
                        if stems is not None and name != "overlap":
                            p = stem_path(stems, uri, name)
                            if p.exists():
                                stem = load_audio(p, t0, t1)
                                stem = np.pad(stem, (0, max(0, len(x) - len(stem))))[:len(x)]
                        yield (i, corpus, name, uri, start, x, seg, stem, float(sp[uri].attrs.get("gain", 1.0)),
                               n_fft, win_length, H)
        finally:
            if inf is not None:
                inf.close()


def write_judge_baselines(items, judge: Judge, out_h5, settings: Faithfulness | dict | None = None, seed: int = 0,
                          threshold: float = Scoring.threshold) -> int:
    """``scores/faithfulness/judge.h5``: :func:`judge_baselines` of every drawn segment (the same draw as
    every proxy's :func:`faithfulness_rows` with this seed), written atomically; returns how many."""
    from proxyseg.core.atomic import atomic_path

    s = Faithfulness.parse(settings)
    rng = np.random.default_rng(seed)
    n = 0
    with atomic_path(out_h5) as tmp, h5py.File(tmp, "w") as h5:
        h5.attrs["judge"] = judge.name
        for _, corpus, name, uri, start, x, seg, stem, _, n_fft, win_length, _ in _drawn(items, judge, s, rng):
            out = judge_baselines(judge, x, seg, CLASSES.index(name), s, threshold, n_fft, win_length, stem)
            g = h5.create_group(str(n))
            g.attrs.update({"corpus": corpus, "class": name, "uri": uri, "start": int(start),
                            "fingerprint": out["fingerprint"]})
            g["L0"] = out["L0"]
            if "logits" in out:
                g["saliency"] = out["saliency"]
                g["logits"] = out["logits"]
                g.attrs["oracle_energy"] = out["oracle_energy"]
            n += 1
    return n


def read_judge_baselines(path) -> dict:
    """``{(corpus, class, uri, start): judge_baselines dict}`` from :func:`write_judge_baselines`' file."""
    out = {}
    with h5py.File(path, "r") as h5:
        for g in h5.values():
            rec = {"fingerprint": str(g.attrs["fingerprint"]), "L0": g["L0"][()]}
            if "logits" in g:
                rec.update(saliency=g["saliency"][()], logits=g["logits"][()],
                           oracle_energy=float(g.attrs["oracle_energy"]))
            out[str(g.attrs["corpus"]), str(g.attrs["class"]), str(g.attrs["uri"]), int(g.attrs["start"])] = rec
    return out


def faithfulness_rows(checkpoint, items, judge: Judge, settings: Faithfulness | dict | None = None, seed: int = 0,
                      system: str = "", explain: Explain | dict | None = None,
                      threshold: float = Scoring.threshold, shuffle_relevance: bool = False,
                      shared=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(curves, segments)``: one curve row per segment, class, method (draw), direction and energy level;
    one segment row per segment and class (the judge's base decision, L-MAC's figures, the oracle, the
    proxy's sanity gate).

    ``items``: ``(corpus, inference.h5, spectrograms.h5, decisions.h5, manifest.tsv[, stems_dir])`` of the
    split to test: the proxy's activations, the spectrogram cache (STFT settings, each file's level gain),
    where the judge decided each class (its inference file, or labels), the audio, and the true stems.
    ``shuffle_relevance``: the negative control (each segment's relevance shuffled across atoms).
    ``shared``: the judge's part of each segment (:func:`read_judge_baselines`, or its file); a segment it
    lacks, or whose audio or settings differ, is judged here.
    """
    s = Faithfulness.parse(settings)
    e = Explain.parse(explain)
    if shared is not None and not isinstance(shared, dict):
        shared = read_judge_baselines(shared)
    shared = shared or {}
    proxy = _Proxy(checkpoint)
    rng = np.random.default_rng(seed)
    curves, segments, reused = [], [], 0
    for _, corpus, name, uri, start, x, seg, stem, gain, n_fft, win_length, H in _drawn(items, judge, s, rng):
        cached = shared.get((corpus, name, uri, int(start)))
        out = _segment(judge, proxy, x, seg, CLASSES.index(name), H, rng, s, e, threshold, n_fft, win_length,
                       gain, stem, shuffle_relevance, cached)
        reused += cached is not None
        ident = {"system": system, "judge": judge.name, "corpus": corpus, "class": name, "uri": uri,
                 "start": start / FRAME_RATE}
        if out is None:
            segments.append({**ident, "decided_frames": 0})
            continue
        rows, seg_row = out
        curves += [{**ident, **r} for r in rows]
        segments.append({**ident, **seg_row})
    if shared:
        log.info("the judge's part of %d segments read from its shared file", reused)
    return pd.DataFrame(curves), pd.DataFrame(segments)


def write_faithfulness(checkpoint, items, judge: Judge, out_tsv, settings=None, seed: int = 0, system: str = "",
                       explain=None, threshold: float = Scoring.threshold, shared=None) -> None:
    """Write ``out_tsv`` (curve rows) and ``<out>.segments.tsv`` beside it (atomically, both or none)."""
    from proxyseg.core.tables import write_table

    curves, segments = faithfulness_rows(checkpoint, items, judge, settings, seed, system, explain, threshold,
                                         shared=shared)
    if curves.empty:
        curves = pd.DataFrame(columns=["system", "judge", "corpus", "class", "uri", "start", "method", "draw",
                                       "direction", "level", "energy", "bins", "k", "logit_drop", "flip_rate",
                                       "prob_drop"])
    write_table(segments, segments_path(out_tsv))
    write_table(curves, out_tsv)


def segments_path(out_tsv) -> Path:
    p = Path(out_tsv)
    return p.with_name(p.name[:-4] + ".segments.tsv" if p.name.endswith(".tsv") else p.name + ".segments.tsv")


# ------------------------------------------------------------------------------------------ statistics

def bootstrap(values, stat=np.mean, n: int = 1000, seed: int = 0, paired=None) -> tuple[float, float, float]:
    """``(stat, 2.5 %, 97.5 %)`` of the percentile bootstrap over segments; ``paired``: a second array, the
    statistic then being ``stat(values) / stat(paired)`` resampled together (a ratio of means). ``stat``
    takes ``axis`` (np.mean, np.median): every resample is computed in one call."""
    v = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(v) if paired is None else np.isfinite(v) & np.isfinite(np.asarray(paired, np.float64))
    v = v[ok]
    w = None if paired is None else np.asarray(paired, np.float64)[ok]
    if v.size == 0:
        return np.nan, np.nan, np.nan

    def f(idx):  # idx (..., n): the statistic of each resample along the last axis
        if w is None:
            return stat(v[idx], axis=-1)
        num, den = stat(v[idx], axis=-1), stat(w[idx], axis=-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(np.abs(den) > 1e-12, num / np.where(den == 0, 1.0, den), np.nan)

    point = f(np.arange(v.size))
    rng = np.random.default_rng(seed)
    boots = f(rng.integers(0, v.size, (n, v.size)))  # the same draws as n calls of size v.size, in one array
    boots = boots[np.isfinite(boots)]
    if boots.size == 0:
        return float(point), np.nan, np.nan
    return float(point), float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))


def _curve_at(g: pd.DataFrame, levels) -> np.ndarray:
    """The mean logit drop of one segment's curve at the energy ``levels`` (interpolated on the energy
    each mask actually removed, starting at (0, 0))."""
    g = g.sort_values("energy")
    return np.interp(levels, np.r_[0.0, g["energy"].to_numpy()], np.r_[0.0, g["logit_drop"].to_numpy()])


def _area(drops: np.ndarray, levels) -> float:
    x = np.r_[0.0, levels]
    y = np.r_[0.0, drops]
    return float(np.trapezoid(y, x) / x[-1])


def per_segment(curves: pd.DataFrame, segments: pd.DataFrame) -> pd.DataFrame:
    """One row per judged segment and class with the paired quantities the summary bootstraps."""
    keys = ["system", "judge", "corpus", "class", "uri", "start"]
    levels = np.sort(curves["level"].unique()) if len(curves) else np.array([0.5])
    out = []
    for key, g in curves.groupby(keys, sort=False):
        rec = dict(zip(keys, key))
        at = {}
        for (method, direction), gm in g.groupby(["method", "direction"]):
            per_draw = [_curve_at(gd, levels) for _, gd in gm.groupby("draw")]
            at[method, direction] = np.mean(per_draw, axis=0)
        for direction, sign in (("deletion", 1.0), ("insertion", -1.0)):
            pre = "" if direction == "deletion" else "ins_"
            expl = at.get(("explanation", direction))
            if expl is None:
                continue
            for base in ("random_active", "loudest", "other_class", "saliency"):
                if (base, direction) in at:
                    rec[f"{pre}auc_gap_{base}"] = sign * (_area(expl, levels) - _area(at[base, direction], levels))
        expl = at.get(("explanation", "deletion"))
        sal = at.get(("saliency", "deletion"))
        for lvl in (0.25, 0.5):
            if expl is not None:
                rec[f"expl_drop_{int(lvl * 100)}"] = float(np.interp(lvl, levels, expl))
            if sal is not None:
                rec[f"saliency_drop_{int(lvl * 100)}"] = float(np.interp(lvl, levels, sal))
        d = g[(g["method"] == "explanation") & (g["direction"] == "deletion")].sort_values("energy")
        if len(d):
            rec["flip_rate_50"] = float(np.interp(0.5, np.r_[0.0, d["energy"]], np.r_[0.0, d["flip_rate"]]))
            rec["_energy"] = d["energy"].to_numpy()
            rec["_drop"] = d["logit_drop"].to_numpy()
        out.append(rec)
    df = pd.DataFrame(out)
    if df.empty:
        return df
    merged = df.merge(segments, on=keys, how="left")
    if "oracle_energy" in merged:
        merged["expl_drop_oracle"] = [
            float(np.interp(oe, np.r_[0.0, en], np.r_[0.0, dr])) if np.isfinite(oe) else np.nan
            for oe, en, dr in zip(merged["oracle_energy"], merged["_energy"], merged["_drop"])]
    return merged.drop(columns=["_energy", "_drop"])


def faithfulness_summary(curves: pd.DataFrame, segments: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """``tables/faithfulness_summary.tsv``: one row per system, judge, class and metric, with its 95 %
    bootstrap interval and the number of segments behind it (:data:`SUMMARY_COLUMNS`)."""
    rows = []
    seg = per_segment(curves, segments)
    if seg.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    for (system, judge, cls), g in seg.groupby(["system", "judge", "class"], sort=False):
        def add(metric, vals, stat=np.mean, paired=None, who=judge):
            v, lo, hi = bootstrap(vals, stat, seed=seed, paired=paired)
            n = int(np.isfinite(np.asarray(vals, np.float64)).sum() if paired is None else
                    (np.isfinite(np.asarray(vals, np.float64)) & np.isfinite(np.asarray(paired, np.float64))).sum())
            rows.append({"system": system, "judge": who, "class": cls, "metric": metric, "value": v,
                         "ci_low": lo, "ci_high": hi, "segments": n})

        for pre in ("", "ins_"):
            for base in ("random_active", "loudest", "other_class", "saliency"):
                col = f"{pre}auc_gap_{base}"
                if col in g:
                    add(col, g[col])
        for lvl in (25, 50):
            if f"expl_drop_{lvl}" in g and f"saliency_drop_{lvl}" in g:
                add(f"ratio_to_saliency_{lvl}", g[f"expl_drop_{lvl}"], paired=g[f"saliency_drop_{lvl}"])
        if "expl_drop_oracle" in g and np.isfinite(g["expl_drop_oracle"]).any():
            add("oracle_share", g["expl_drop_oracle"], paired=g["oracle_logit_drop"])
        if "flip_rate_50" in g:
            add("flip_rate_50", g["flip_rate_50"])
        for col in ("expl_drop_50", "saliency_drop_50"):
            if col in g:
                add(col, g[col])
        if "k_to_flip" in g:
            add("k_to_flip", g["k_to_flip"], stat=np.median)
        if "proxy_sanity" in g:
            add("proxy_sanity", g["proxy_sanity"], stat=np.median, who="proxy")
        for m in LMAC:
            for pre in ("", "saliency_"):
                if pre + m in g:
                    add(pre + m, g[pre + m])
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def mean_curves(curves: pd.DataFrame) -> pd.DataFrame:
    """``tables/faithfulness_curves.tsv``: per system, judge, class, method, direction and level, the mean
    energy removed, logit drop, flip rate and probability drop over segments (draws averaged first)."""
    if curves.empty:
        return pd.DataFrame(columns=["system", "judge", "class", "method", "direction", "level", "energy",
                                     "logit_drop", "flip_rate", "prob_drop", "segments"])
    keys = ["system", "judge", "class", "method", "direction", "level"]
    per_seg = curves.groupby(keys + ["corpus", "uri", "start"], sort=False)[
        ["energy", "logit_drop", "flip_rate", "prob_drop"]].mean().reset_index()
    g = per_seg.groupby(keys, sort=False)
    out = g[["energy", "logit_drop", "flip_rate", "prob_drop"]].mean()
    out["segments"] = g.size()
    return out.reset_index()


def wide_table(curves_mean: pd.DataFrame, segments: pd.DataFrame) -> pd.DataFrame:
    """``tables/faithfulness.tsv``: per system, class and removal, the mean logit drop and flip rate at each
    energy level (deletion), and the soft-mask removals of the paper's explanation as extra rows; the median
    ``proxy_sanity`` of the class and ``judgeable`` (no: below 0.5, the removal does not move the proxy)."""
    rows = []
    dele = curves_mean[curves_mean["direction"] == "deletion"]
    for (system, judge, cls, method), g in dele.groupby(["system", "judge", "class", "method"], sort=False):
        rec = {"system": system, "judge": judge, "class": cls, "removal": method, "segments": int(g["segments"].max())}
        for _, r in g.sort_values("level").iterrows():
            pct = int(round(r["level"] * 100))
            rec[f"energy_{pct}"] = r["energy"]
            rec[f"logit_drop_{pct}"] = r["logit_drop"]
            rec[f"flip_{pct}"] = r["flip_rate"]
        rows.append(rec)
    judged = segments[segments.get("decided_frames", pd.Series(dtype=float)).fillna(0) > 0] if len(segments) else segments
    for (system, judge, cls), g in judged.groupby(["system", "judge", "class"], sort=False) if len(judged) else []:
        for domain in ("linear", "log"):
            col = f"soft_{domain}_logit_drop"
            if col in g and g[col].notna().any():
                rows.append({"system": system, "judge": judge, "class": cls, "removal": f"soft_{domain} (tau)",
                             "segments": int(g[col].notna().sum()), "soft_energy": g[f"soft_{domain}_energy"].mean(),
                             "soft_logit_drop": g[col].mean()})
    table = pd.DataFrame(rows)
    if len(table) and len(judged) and "proxy_sanity" in judged:
        sanity = judged.groupby(["system", "class"])["proxy_sanity"].median()
        table["proxy_sanity"] = [sanity.get((sy, c), np.nan) for sy, c in zip(table["system"], table["class"])]
        # the sanity gate: a removal that does not move the explained model's own proxy is no verdict
        table["judgeable"] = table["proxy_sanity"].map(lambda v: "yes" if v >= 0.5 else ("no" if v < 0.5 else "?"))
    return table


def verdicts(summary: pd.DataFrame) -> pd.DataFrame:
    """Per system and class: ``pass`` where the explanation's deletion beats energy-matched random active
    atoms with a 95 % interval above 0 (``auc_gap_random_active``) and the removal moves the proxy itself
    (median ``proxy_sanity`` >= 0.5); ``not judgeable`` where it does not; ``fail`` otherwise."""
    out = []
    for (system, cls), g in summary.groupby(["system", "class"], sort=False):
        by = g.set_index("metric")
        sanity = by["value"].get("proxy_sanity", np.nan)
        low = by["ci_low"].get("auc_gap_random_active", np.nan)
        verdict = "not judgeable" if not sanity >= 0.5 else ("pass" if low > 0 else "fail")
        out.append({"system": system, "class": cls, "verdict": verdict})
    return pd.DataFrame(out, columns=["system", "class", "verdict"])


# ---------------------------------------------------------------------------------------------- figures

_COLORS = {"explanation": "tab:red", "random_active": "tab:olive", "other_class": "tab:purple",
           "loudest": "tab:gray", "saliency": "tab:blue"}


def plot_curves(path, curves_mean: pd.DataFrame, segments: pd.DataFrame, system: str) -> None:
    """Deletion and insertion curves (mean logit drop against the share of energy removed or kept) of one
    proxy's explanation and every baseline, one row per class; the oracle (true stem removed) as a star."""
    from proxyseg.core.figures import new_figure, save_figure

    g = curves_mean[curves_mean["system"] == system]
    classes = [c for c in CLASSES if c in set(g["class"])] or ["(none)"]
    fig = new_figure(figsize=(9, 2.8 * len(classes)))
    axes = np.atleast_2d(fig.subplots(len(classes), 2, squeeze=False))
    for i, cls in enumerate(classes):
        for j, direction in enumerate(DIRECTIONS):
            ax = axes[i, j]
            gc = g[(g["class"] == cls) & (g["direction"] == direction)]
            for method, gm in gc.groupby("method", sort=False):
                gm = gm.sort_values("energy")
                ax.plot(np.r_[0, gm["energy"]], np.r_[0 if direction == "deletion" else np.nan, gm["logit_drop"]],
                        marker="o", ms=3, color=_COLORS.get(method, "k"), label=method.replace("_", " "))
            sg = segments[(segments["system"] == system) & (segments["class"] == cls)] if len(segments) else segments
            if direction == "deletion" and "oracle_energy" in sg and sg["oracle_energy"].notna().any():
                ax.plot(sg["oracle_energy"].mean(), sg["oracle_logit_drop"].mean(), "*", ms=12, color="gold",
                        markeredgecolor="k", label="true stem removed")
            n = int(gc["segments"].max()) if len(gc) else 0
            ax.set_title(f"{cls}: {direction} (n={n})", fontsize=9)
            ax.set_xlabel("share of the segment's energy " + ("removed" if direction == "deletion" else "kept"),
                          fontsize=8)
            ax.set_ylabel("judge's logit drop", fontsize=8)
            ax.grid(alpha=0.3)
            if i == 0 and j == 0:
                ax.legend(fontsize=7)
    fig.suptitle(f"{system}: faithfulness on an energy axis (deletion: higher is better for the explanation; "
                 "insertion: lower)", fontsize=9)
    fig.tight_layout()
    save_figure(fig, Path(path), cropped=True)


def faithfulness_table(inputs, out_tsv, out_md, out_summary, out_curves, figures=(), seed: int = 0) -> pd.DataFrame:
    """Gather per-proxy outputs of :func:`write_faithfulness` into the tables and one figure per proxy
    (``figures``: one path per input, in the same order)."""
    from proxyseg.core.tables import write_table

    curves = pd.concat([pd.read_csv(p, sep="\t") for p in inputs], ignore_index=True)
    segments = pd.concat([pd.read_csv(segments_path(p), sep="\t") for p in inputs], ignore_index=True)
    summary = faithfulness_summary(curves, segments, seed=seed)
    cm = mean_curves(curves)
    table = wide_table(cm, segments)
    if len(table):
        verdict = verdicts(summary).set_index(["system", "class"])["verdict"]
        table["verdict"] = [verdict.get((sy, c), "?") for sy, c in zip(table["system"], table["class"])]
    write_table(table, out_tsv, out_md, floatfmt=".3g")
    write_table(summary, out_summary)
    write_table(cm, out_curves)
    for p, fig in zip(inputs, figures):
        seg = pd.read_csv(segments_path(p), sep="\t")
        plot_curves(fig, cm, segments, str(seg["system"].iloc[0]) if len(seg) else Path(p).stem)
    return summary
