"""Why a segmenter fires on music: on audio where no one speaks, every frame a black box calls speech is a
false alarm. The proxy's explanation of those frames names the bands they rest on, and the faithfulness test
(:mod:`proxyseg.explain.faithfulness`) checks the claim where it matters: removing the explained part (up to
half the segment's energy) should stop the black box's speech decision on those frames, more often than
removing random active atoms of the same energy, or the loudest bins; the black box's own evidence
(occlusion) is the strong baseline.

One row per piece (the false-alarm minutes, the bands the explanation names, the share of false-alarm frames
that stop being speech per removal) and a pooled row with 95 % bootstrap intervals over segments; a figure
of both. A claim about a black box, which the user or the labels may dispute: the false alarms are the black
box's decisions on audio said to hold no speech.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from proxyseg.core.frames import FRAME_RATE
from proxyseg.explain.faithfulness import BANDS, bootstrap, faithfulness_rows
from proxyseg.explain.judges import Judge

#: The removals compared (the explanation and its baselines, at the energy level :data:`LEVEL`).
REMOVALS = ("explanation", "random_active", "loudest", "saliency")
LEVEL = 0.5
BAND_COLUMNS = [f"band_{lo}_{hi}" for lo, hi in BANDS]
LABELS = {"explanation": "explanation", "random_active": "random active atoms", "loudest": "loudest bins",
          "saliency": "its own evidence (gradient or occlusion)"}

__all__ = ["LEVEL", "REMOVALS", "false_alarm_tables", "plot_false_alarms", "write_false_alarms"]


def _speech_only(judge: Judge) -> Judge:
    """The judge asked about speech only (its other classes are not false alarms on music): a shallow copy,
    the model shared."""
    import copy

    view = copy.copy(judge)
    view.classes = ("speech",)
    return view


def _fa_minutes(items) -> dict[str, tuple[float, float]]:
    """``{uri: (minutes of audio, minutes the judge calls speech)}`` from each item's decisions file."""
    from proxyseg.explain.relevance import read_targets

    out = {}
    for item in items:
        for uri, t in read_targets(item[3]).items():
            out[uri] = (len(t) / FRAME_RATE / 60.0, float((t[:, 0] == 1).sum()) / FRAME_RATE / 60.0)
    return out


def false_alarm_tables(curves: pd.DataFrame, segments: pd.DataFrame, minutes: dict, seed: int = 0):
    """``(pieces, pooled)``: per piece, its minutes, the judge's speech minutes, the segments tested, the
    explanation's band shares (mean over segments) and the flip rate of each removal at :data:`LEVEL`; pooled,
    each removal's flip rate with its 95 % interval, and the explanation's over random active atoms."""
    keys = ["uri", "start"]
    d = curves[(curves["direction"] == "deletion") & np.isclose(curves["level"], LEVEL)] if len(curves) else curves
    flips = (d.groupby(keys + ["method"])["flip_rate"].mean().unstack("method") if len(d)
             else pd.DataFrame(columns=list(REMOVALS)))
    judged = segments[segments.get("decided_frames", pd.Series(0, index=segments.index)).fillna(0) > 0]
    per_seg = judged.set_index(keys).join(flips, how="inner") if len(judged) else pd.DataFrame()
    rows = []
    for uri in sorted(minutes):
        total, said = minutes[uri]
        rec = {"piece": uri, "minutes": total, "speech_minutes": said, "speech_%": 100.0 * said / max(total, 1e-12)}
        g = per_seg.xs(uri, level="uri") if len(per_seg) and uri in per_seg.index.get_level_values("uri") else None
        rec["segments"] = 0 if g is None else len(g)
        if g is not None:
            bands = g[[c for c in BAND_COLUMNS if c in g]].mean()
            rec["top_band"] = bands.idxmax().removeprefix("band_").replace("_", "-") + " Hz" if bands.notna().any() else ""
            rec.update(bands.to_dict())
            for m in REMOVALS:
                rec[f"flip_{m}"] = float(g[m].mean()) if m in g else np.nan
        rows.append(rec)
    pieces = pd.DataFrame(rows)
    pooled = []
    for m in REMOVALS:
        if len(per_seg) and m in per_seg:
            v, lo, hi = bootstrap(per_seg[m].to_numpy(), seed=seed)
            pooled.append({"removal": m, "flip_rate": v, "ci_low": lo, "ci_high": hi, "segments": int(per_seg[m].notna().sum())})
    if len(per_seg) and {"explanation", "random_active"} <= set(per_seg):
        v, lo, hi = bootstrap(per_seg["explanation"].to_numpy(), seed=seed, paired=per_seg["random_active"].to_numpy())
        pooled.append({"removal": "explanation / random_active", "flip_rate": v, "ci_low": lo, "ci_high": hi,
                       "segments": int(len(per_seg))})
    return pieces, pd.DataFrame(pooled, columns=["removal", "flip_rate", "ci_low", "ci_high", "segments"])


def plot_false_alarms(path, pieces: pd.DataFrame, pooled: pd.DataFrame, title: str) -> None:
    """Left: the bands each piece's false alarms rest on (explanation shares); right: the share of false-alarm
    frames that stop being speech for the black box per removal, per piece and pooled."""
    from proxyseg.core.figures import new_figure, save_figure

    tested = pieces[pieces["segments"] > 0] if len(pieces) else pieces
    n = max(len(tested), 1)
    fig = new_figure(figsize=(11, 1.2 + 0.32 * (n + 1)))
    ax_b, ax_f = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.2]})
    labels = [f"{p} ({m:.1f} min)" for p, m in zip(tested.get("piece", []), tested.get("speech_minutes", []))]
    shares = tested[BAND_COLUMNS].to_numpy(float) if len(tested) else np.zeros((0, len(BANDS)))
    im = ax_b.imshow(shares if len(shares) else np.zeros((1, len(BANDS))), aspect="auto", cmap="magma", vmin=0,
                     vmax=max(float(np.nanmax(shares)) if shares.size and np.isfinite(shares).any() else 1.0, 1e-6))
    ax_b.set_xticks(range(len(BANDS)), [f"{lo}-{hi}" for lo, hi in BANDS], fontsize=7, rotation=30)
    ax_b.set_yticks(range(len(labels)), labels, fontsize=7)
    ax_b.set_xlabel("band (Hz): share of the explanation", fontsize=8)
    fig.colorbar(im, ax=ax_b, fraction=0.04)
    colors = {"explanation": "tab:red", "random_active": "tab:olive", "loudest": "tab:gray", "saliency": "tab:blue"}
    y = np.arange(len(tested))
    width = 0.8 / len(REMOVALS)
    for i, m in enumerate(REMOVALS):
        col = f"flip_{m}"
        if col in tested:
            ax_f.barh(y + i * width - 0.4 + width / 2, tested[col], height=width, color=colors[m], label=LABELS[m])
    for _, r in pooled[pooled["removal"].isin(REMOVALS)].iterrows():
        ax_f.axvline(r["flip_rate"], color=colors[r["removal"]], ls="--", lw=1)
    ax_f.set_yticks(y, [""] * len(y))
    ax_f.set_xlim(0, 1)
    ax_f.invert_yaxis()
    ax_f.set_xlabel(f"false-alarm frames no longer speech ({int(LEVEL * 100)} % of the energy removed; dashed: pooled)",
                    fontsize=8)
    if len(tested):
        ax_f.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12 - 0.6 / n), ncol=len(REMOVALS))
    else:
        ax_f.text(0.5, 0.5, "no window where the black box says speech:\nno false alarm to explain",
                  ha="center", va="center", fontsize=9, transform=ax_f.transAxes)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, Path(path), cropped=True)


def write_false_alarms(checkpoint, items, judge: Judge, out_tsv, out_pooled, out_png, settings=None, seed: int = 0,
                       system: str = "", explain=None, threshold: float = 0.5) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run the faithfulness test on the judge's speech decisions over ``items`` (music: every one a false
    alarm) and write the per-piece table, the pooled table and the figure (each atomically)."""
    from proxyseg.core.tables import write_table

    curves, segments = faithfulness_rows(checkpoint, items, _speech_only(judge), settings, seed, system, explain,
                                         threshold)
    pieces, pooled = false_alarm_tables(curves, segments, _fa_minutes(items), seed)
    write_table(pieces, out_tsv)
    write_table(pooled, out_pooled)
    who = getattr(judge, "kind", judge.name)
    plot_false_alarms(out_png, pieces, pooled, f"{system}: why {who} says speech on music (its false alarms)")
    return pieces, pooled
