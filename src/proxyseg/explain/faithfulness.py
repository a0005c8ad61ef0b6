"""Faithfulness of the proxy's explanations (METHOD §7, from L2I): does the decision really rest on the
components the explanation names?

For every test segment where class c is annotated active, the relevant components R (local relevance
``r[k, c] > tau``) are removed from H (their rows set to zero) and the segment is classified again
(``y = Θ H + b``, the proxy's own classifier). The drop of the class probability (mean over the segment's
frames, before minus after) is compared with removing

* the same number of **random** components, drawn uniformly from all K (several seeded draws, averaged);
* the same number of random components among those **active** in the segment (mean activation above
  :data:`ACTIVE`), a harder baseline: inactive components change nothing when removed;
* the same number of **least relevant** components (the bottom of the relevance ranking for c, i.e.
  those that speak most against c; removing them should *raise* the probability, a negative drop).

For spectrogram-input proxies the **input-level** test removes the explanation from the input itself:
with the soft mask M of R (``explain.explanation_mask``) on the magnitude spectrum,
``X' = log(1 + (1 - M)^2 (exp(X) - 1))`` (the residual's log-power spectrogram), and the proxy runs
again on X'; same baselines with the masks of random components.

Segments in which no component is relevant for c are counted (``no_relevant``) and left out.

Both tests above ask the proxy, whose logit is linear in H: removing components from H and re-reading Θ
is close to true by construction (r is each component's share of the logit), so they are an **internal
check**. The test that says whether an explanation names what the *explained model* rests on asks the
**teacher** (METHOD §7, L2I's protocol; ``classifier: teacher`` or ``both``, the default): the segment's
audio is resynthesised without the part the components explain (magnitude STFT times ``1 - M``, original
phase, ISTFT; M is the soft mask of the component set over ReLU(W)), WavLM and the teacher classify it
again, and the drop of the teacher's class probability (mean over the segment's frames, against the
unmasked resynthesis) is compared for the relevant, random, random-active and least relevant sets (the
same sets as above). Where it fits, L-MAC's figures (Paissan et al. 2024) on the explanation itself
(audio times M of the relevant set): AD, the average drop ``max(0, p - p_expl) / p`` (%, lower is
better), and AI, the share of segments where ``p_expl > p`` (%, higher is better). The teacher sees
every segment alone (2 s, no context), the same for every kind, so context effects cancel in the
comparison; it is run on at most ``teacher_segments`` segments per class and corpus (the first of the
segments drawn above), since each costs 2 + 2·draws WavLM forwards. ``mask_domain`` (the workflow passes
``explain.mask_domain``) says what M takes a fraction of: the magnitude (``linear``) or, as L2I, the
log-power ``log(1 + |S|²)`` (``log``: a far harder cut of loud bins).
"""

from __future__ import annotations

import logging
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import torch

from proxyseg.explain import relevance as ex
from proxyseg.core.frames import CLASSES, FRAME_RATE, HOP, SAMPLE_RATE, WIN
from proxyseg.core.audio import load_audio
from proxyseg.proxy.model import load_proxy
from proxyseg.dictionary.spectrogram import istft, stft
from proxyseg.settings import CLASSIFIERS, Explain, Faithfulness

log = logging.getLogger("proxyseg.explain.faithfulness")

#: A component counts as active in a segment when its mean activation exceeds this.
ACTIVE = 1e-3



KINDS = ("relevant", "random", "random_active", "least")

__all__ = ["ACTIVE", "CLASSIFIERS", "KINDS", "BlackBoxJudge", "TeacherJudge", "removal_sets", "probability_drops", "residual_spectrogram",
           "faithfulness_rows", "faithfulness_summary", "plot_faithfulness"]


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def removal_sets(r_c: np.ndarray, z: np.ndarray, tau: float, rng: np.random.Generator, draws: int
                 ) -> dict[str, list[np.ndarray]]:
    """Component sets to remove for one segment and class: ``{"relevant": [R], "random": [...draws],
    "random_active": [...draws], "least": [L]}``; all of size ``|R|`` (``random_active`` smaller when
    fewer components are active). ``r_c`` (K,) relevance for the class, ``z`` (K,) mean activations."""
    K = r_c.shape[0]
    rel = np.flatnonzero(r_c > tau)
    n = rel.size
    active = np.flatnonzero(z > ACTIVE)
    least = np.argsort(r_c, kind="stable")[:n]
    return {
        "relevant": [rel],
        "random": [rng.choice(K, size=n, replace=False) for _ in range(draws)],
        "random_active": [rng.choice(active, size=min(n, active.size), replace=False) for _ in range(draws)],
        "least": [least],
    }


def probability_drops(H: np.ndarray, theta: np.ndarray, bias: np.ndarray, c: int,
                      sets: dict[str, list[np.ndarray]]) -> dict[str, float]:
    """Mean over frames of ``p_c(H) - p_c(H without the set)``, averaged over the draws of each kind."""
    base = _sigmoid(theta[c] @ H + bias[c])
    out = {"base": float(base.mean())}
    for kind, draws in sets.items():
        drops = []
        for comps in draws:
            removed = theta[c, comps] @ H[comps] if len(comps) else 0.0
            drops.append(float((base - _sigmoid(theta[c] @ H + bias[c] - removed)).mean()))
        out[kind] = float(np.mean(drops)) if drops else float("nan")
    return out


def residual_spectrogram(X: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Log-power spectrogram of the residual: ``log(1 + (1 - M)^2 (exp(X) - 1))`` (X = log(1 + |S|^2))."""
    return np.log1p(np.square(1.0 - mask) * np.expm1(X))


def _segments(targets_h5, seconds: float, max_segments: int, rng) -> dict[str, list[tuple[str, int]]]:
    targets = ex.read_targets(targets_h5)
    return ex.select_segments_across(targets, int(round(seconds * FRAME_RATE)), max_segments, rng=rng)


class TeacherJudge:
    """The explained model on waveforms: WavLM (the feature cache's layers, float16 like the cache) -> the
    teacher's fusion and TCN -> per-frame class probabilities, a batch of equal-length clips at a time."""

    def __init__(self, teacher_pt, wavlm: str, features_h5, device: str = "auto"):
        from proxyseg.features.wavlm import load_wavlm
        from proxyseg.teacher.model import load_teacher, resolve_device

        self.device = resolve_device(device)
        self.teacher, _ = load_teacher(teacher_pt, self.device)
        self.wavlm = str(wavlm)
        with h5py.File(features_h5, "r") as h5:
            self.layers = [int(i) for i in np.atleast_1d(h5.attrs["layers"])]
            do_normalize = bool(h5.attrs.get("do_normalize", False))  # as the cache the teacher learned from
        self.net = load_wavlm(self.wavlm, normalize=do_normalize).to(self.device)

    @torch.no_grad()
    def probs(self, wavs: np.ndarray) -> np.ndarray:
        """``wavs`` (B, N) float32 at 16 kHz -> probabilities (B, C, T) float64."""
        from proxyseg.features.wavlm import hidden_states

        states = hidden_states(self.net, torch.from_numpy(np.ascontiguousarray(wavs, dtype=np.float32)).to(self.device),
                          self.layers, use_amp=False)
        logits, _ = self.teacher(torch.from_numpy(states.astype(np.float32)).to(self.device))
        return torch.sigmoid(logits).double().cpu().numpy()


class BlackBoxJudge:
    """A pre-trained black-box teacher (:mod:`proxyseg.teacher.blackbox`) on waveforms: per-frame
    probabilities of the classes it knows (NaN for the others, which are not tested)."""

    def __init__(self, kind: str, checkpoint: str | None = None, device: str = "auto"):
        from proxyseg.teacher.blackbox import load_blackbox
        from proxyseg.teacher.model import resolve_device

        self.model = load_blackbox(kind, checkpoint, str(resolve_device(device)))
        self.classes = self.model.classes

    def probs(self, wavs: np.ndarray) -> np.ndarray:
        """``wavs`` (B, N) float32 at 16 kHz -> probabilities (B, C, T) float64."""
        return np.stack([_sigmoid(self.model.logits(w).astype(np.float64)).T for w in wavs])


@torch.no_grad()
def faithfulness_rows(checkpoint, items, settings: Faithfulness | dict | None = None, seed: int = 0,
                      system: str = "", judge: TeacherJudge | None = None,
                      explain: Explain | dict | None = None) -> pd.DataFrame:
    """One row per (corpus, class, segment): drops of every kind, H-level and (spectrogram input)
    input-level (the proxy's internal check) and, with a ``judge``, teacher-level.

    ``items``: ``(corpus, inference.h5, spectrograms.h5, targets.h5, manifest.tsv)`` of the split to test
    (the manifest gives the audio the teacher hears; quadruples without it are accepted when no judge).
    ``explain``: the explain settings, whose ``tau`` and ``mask_domain`` make the explanations tested.
    """
    s = Faithfulness.parse(settings)
    e = Explain.parse(explain)
    by_proxy = s["classifier"] in ("proxy", "both")
    if s["classifier"] in ("teacher", "both") and judge is None:
        raise ValueError(f"faithfulness classifier {s['classifier']!r} needs the teacher (judge)")
    if s["classifier"] == "proxy":
        judge = None
    model, ckpt = load_proxy(checkpoint)
    inp = ckpt["hparams"].get("input", "wavlm")
    theta = model.theta.weight.detach().double().numpy()[:, :, 0]
    bias = model.theta.bias.detach().double().numpy()
    W = model.W.detach().double().numpy()
    if (W < 0).any():
        log.warning("%s: the dictionary has negative entries (learned_random): masks use ReLU(W)", checkpoint)
    Wpos = np.maximum(W, 0.0)
    input_level = by_proxy and bool(s["input_level"]) and inp == "spectrogram"
    frames = int(round(s["segment_seconds"] * FRAME_RATE))
    rows = []
    for item in items:
        corpus, infer_h5, spec_h5, targets_h5 = item[:4]
        manifest = item[4] if len(item) > 4 else None
        if judge is not None and manifest is None:
            raise ValueError(f"{corpus}: the teacher-judged test needs the split's manifest.tsv (its audio)")
        audio = pd.read_csv(manifest, sep="\t").set_index("uri")["audio"].to_dict() if judge is not None else {}
        rng = np.random.default_rng(seed)
        chosen = _segments(targets_h5, s["segment_seconds"], int(s["max_segments"]), rng)
        with h5py.File(infer_h5, "r") as inf, h5py.File(spec_h5, "r") as sp:
            stft_settings = {"n_fft": int(sp.attrs.get("n_fft", 512)), "win_length": int(sp.attrs.get("win_length", 400))}
            for c, name in enumerate(CLASSES):
                if name not in getattr(judge, "classes", CLASSES):
                    continue  # a black-box teacher's unknown class: nothing to judge, nothing was distilled
                judged = 0
                for uri, start in chosen[name]:
                    H = inf[uri]["H"][start:start + frames].astype(np.float64).T
                    if H.shape[1] < frames:
                        continue
                    r = ex.local_relevance(H, theta)[:, c]
                    row = {"system": system, "corpus": corpus, "class": name, "uri": uri,
                           "start": start / FRAME_RATE, "n_relevant": int((r > e.tau).sum())}
                    if row["n_relevant"] == 0:
                        rows.append({**row, "no_relevant": True})
                        continue
                    sets = removal_sets(r, H.mean(axis=1), e.tau, rng, int(s["draws"]))
                    row["no_relevant"] = False
                    if by_proxy:
                        drops = probability_drops(H, theta, bias, c, sets)
                        row.update({"base": drops["base"], **{f"drop_{k}": drops[k] for k in KINDS}})
                    if input_level:
                        row.update(_input_level(model, sp[uri][start:start + frames].astype(np.float32).T,
                                                Wpos, theta, c, e.tau, rng, int(s["draws"])))
                    if judge is not None and judged < int(s["teacher_segments"]):
                        t0 = start / FRAME_RATE
                        x = load_audio(audio[uri], t0, t0 + (frames - 1) / FRAME_RATE + WIN / SAMPLE_RATE)
                        row.update(_teacher_level(judge, x, Wpos, H, sets, c, domain=e.mask_domain,
                                                  level_gain=float(sp[uri].attrs.get("gain", 1.0)),
                                                  **stft_settings))
                        judged += 1
                    rows.append(row)
    return pd.DataFrame(rows)


def _teacher_level(judge: TeacherJudge, x: np.ndarray, W: np.ndarray, H: np.ndarray, sets, c: int,
                   n_fft: int, win_length: int, domain: str = "linear", level_gain: float = 1.0) -> dict:
    """Resynthesise the segment without each component set's part and ask the teacher again; also the
    explanation alone (relevant part kept) for L-MAC's AD and AI. ``domain``: what the mask takes a
    fraction of (:func:`proxyseg.explain.relevance.mask_gain`), of the X the proxy saw (``level_gain``, the
    file's spectrogram.level_db gain); the teacher hears the audio at the file's own level."""
    spec = stft(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), n_fft=n_fft, win_length=win_length)
    if spec.shape[0] != W.shape[0]:
        raise ValueError(f"the spectrogram settings (n_fft {n_fft}) give {spec.shape[0]} bins but the proxy's "
                         f"dictionary has {W.shape[0]}")
    T = min(spec.shape[1], H.shape[1])
    spec, H = spec[:, :T], H[:, :T]
    kinds = [kind for kind, comp_sets in sets.items() for _ in comp_sets]
    masks = [ex.explanation_mask(W, H, comps) for comp_sets in sets.values() for comps in comp_sets]
    keep = [np.ones_like(masks[0])] + [1.0 - m for m in masks] + [masks[kinds.index("relevant")]]
    mag = spec.abs().double() * float(level_gain)
    gains = torch.stack([ex.mask_gain(mag, torch.from_numpy(k), domain) for k in keep]).float()
    length = HOP * (T - 1) + WIN if T else 0
    wavs = istft(spec[None] * gains, length=length, n_fft=n_fft, win_length=win_length).numpy()
    p = judge.probs(wavs)[:, c, :].mean(axis=1)
    base, after, expl = p[0], p[1:-1], p[-1]
    out = {"teacher_base": float(base), "teacher_expl": float(expl)}
    for kind in sets:
        out[f"teacher_drop_{kind}"] = float(np.mean([base - a for k, a in zip(kinds, after) if k == kind]))
    return out


def _input_level(model, X: np.ndarray, W: np.ndarray, theta, c: int, tau: float, rng, draws: int) -> dict:
    """Run the proxy on the segment's X, remove masks of component sets from X, run it again."""
    def run(x):
        out = model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None])
        return torch.sigmoid(out["logits"][0, c]).double().numpy(), out["H"][0].double().numpy()

    base, H = run(X)
    r = ex.local_relevance(H, theta)[:, c]
    if not (r > tau).any():
        return {"input_n_relevant": 0}
    sets = removal_sets(r, H.mean(axis=1), tau, rng, draws)
    out = {"input_n_relevant": int((r > tau).sum()), "input_base": float(base.mean())}
    kinds = [kind for kind, comp_sets in sets.items() for _ in comp_sets]
    X64 = X.astype(np.float64)
    batch = np.stack([residual_spectrogram(X64, ex.explanation_mask(W, H, comps))
                      for comp_sets in sets.values() for comps in comp_sets]).astype(np.float32)
    after = torch.sigmoid(model(torch.from_numpy(batch))["logits"][:, c]).double().numpy()  # one batch
    drops = (base[None, :] - after).mean(axis=1)
    for kind in sets:
        out[f"input_drop_{kind}"] = float(np.mean([d for k, d in zip(kinds, drops) if k == kind]))
    return out


def faithfulness_summary(rows: pd.DataFrame) -> pd.DataFrame:
    """Per system and class (over every corpus of the split): segments, mean drops, ratios.

    ``teacher_*``: the teacher's judgement (segments it heard, mean drops, ``teacher_ratio_random``, and
    L-MAC's ``teacher_AD`` / ``teacher_AI`` in %); the other drops are the proxy's internal check.
    """
    out = []
    for (system, cls), g in rows.groupby(["system", "class"], sort=False):
        ok = g[~g["no_relevant"].astype(bool)]
        rec = {"system": system, "class": cls, "segments": len(ok), "no_relevant": int(g["no_relevant"].sum()),
               "n_relevant": ok["n_relevant"].mean() if len(ok) else np.nan}
        if "teacher_base" in ok:
            t = ok.dropna(subset=["teacher_base"])
            rec["teacher_segments"] = len(t)
            rec["teacher_base_prob"] = t["teacher_base"].mean() if len(t) else np.nan
            for kind in KINDS:
                rec[f"teacher_drop_{kind}"] = t[f"teacher_drop_{kind}"].mean() if len(t) else np.nan
            rec["teacher_ratio_random"] = _ratio(rec["teacher_drop_relevant"], rec["teacher_drop_random"])
            base = t["teacher_base"].to_numpy()
            expl = t["teacher_expl"].to_numpy()
            rec["teacher_AD"] = float(np.mean(np.maximum(0.0, base - expl) / np.maximum(base, 1e-12)) * 100) \
                if len(t) else np.nan
            rec["teacher_AI"] = float(np.mean(expl > base) * 100) if len(t) else np.nan
        if "base" in ok:
            rec["base_prob"] = ok["base"].mean() if len(ok) else np.nan
            for kind in KINDS:
                rec[f"drop_{kind}"] = ok[f"drop_{kind}"].mean() if len(ok) else np.nan
            rec["ratio_random"] = _ratio(rec["drop_relevant"], rec["drop_random"])
            rec["ratio_random_active"] = _ratio(rec["drop_relevant"], rec["drop_random_active"])
        if "input_drop_relevant" in ok:
            inp = ok.dropna(subset=["input_drop_relevant"])
            for kind in KINDS:
                rec[f"input_drop_{kind}"] = inp[f"input_drop_{kind}"].mean() if len(inp) else np.nan
            rec["input_ratio_random"] = _ratio(rec["input_drop_relevant"], rec["input_drop_random"])
        out.append(rec)
    return pd.DataFrame(out)


def _ratio(a: float, b: float) -> float:
    if not (np.isfinite(a) and np.isfinite(b)) or b <= 0:
        return float("inf") if np.isfinite(a) and a > 0 and np.isfinite(b) and b <= 0 else float("nan")
    return float(a / b)


def plot_faithfulness(path, summary: pd.DataFrame) -> None:
    """Grouped bars: mean probability drop per class for each removal kind, one panel per system: the
    teacher's drops when it judged (else the proxy's own, the internal check)."""
    from proxyseg.explain.relevance import new_figure, save_figure

    by_teacher = "teacher_drop_relevant" in summary and bool(np.isfinite(summary["teacher_drop_relevant"]).any())
    prefix, count = ("teacher_drop_", "teacher_segments") if by_teacher else ("drop_", "segments")
    systems = list(dict.fromkeys(summary["system"]))
    fig = new_figure(figsize=(4.2 * max(1, len(systems)), 4.2))
    axes = np.atleast_1d(fig.subplots(1, max(1, len(systems)), sharey=True))
    colors = {"relevant": "tab:red", "random": "tab:gray", "random_active": "tab:olive", "least": "tab:blue"}
    for ax, system in zip(axes, systems):
        g = summary[summary["system"] == system].set_index("class").reindex(CLASSES)
        x = np.arange(len(CLASSES))
        for i, kind in enumerate(KINDS):
            ax.bar(x + (i - 1.5) * 0.2, g[f"{prefix}{kind}"].fillna(0.0), width=0.2, color=colors[kind], label=kind)
        ax.axhline(0, color="k", lw=0.6)
        ax.set_xticks(x, [f"{c}\n(n={int(n) if np.isfinite(n) else 0})" for c, n in zip(CLASSES, g[count])],
                      fontsize=8)
        ax.set_title(system, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("mean drop of the teacher's class probability" if by_teacher
                       else "mean drop of the proxy's class probability (internal check)")
    axes[0].legend(fontsize=8, title="components removed", title_fontsize=8)
    fig.suptitle("Faithfulness: the relevant components' audio removed vs random / least relevant ones, judged by "
                 + ("the teacher" if by_teacher else "the proxy itself") + " (test split)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, Path(path))
