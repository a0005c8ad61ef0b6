"""Fidelity of a proxy to its teacher (beyond the paper, from L2I): do their decisions agree, frame by frame?

Also the proxy's NMF reconstruction error and the sparsity of its activations H on the same files.
"""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd

from proxyseg.core.frames import CLASSES, FRAME_RATE
from proxyseg.core.agreement import cohen_kappa, frame_f1
from proxyseg.teacher.dumpfile import known_classes


def fidelity_rows(system: str, corpus: str, teacher_h5, proxy_h5, threshold: float = 0.5) -> pd.DataFrame:
    """Per class: frame-level F1 of the proxy's decisions against the teacher's, over every frame of the split,
    with its floor (``constant_f1``: the F1 of deciding the class on every frame, which is high where the
    teacher decides it often) and Cohen's kappa (agreement beyond chance)."""
    teacher, proxy = [], []
    with h5py.File(teacher_h5, "r") as t, h5py.File(proxy_h5, "r") as p:
        known = known_classes(t)  # a black-box teacher's classes; the proxy learned no other
        for uri in t:
            n = min(len(t[uri]["probs"]), len(p[uri]["probs"]))
            teacher.append(t[uri]["probs"][:n] >= threshold)
            proxy.append(p[uri]["probs"][:n] >= threshold)
        recon = float(p.attrs.get("recon_mse", np.nan))
        sparsity = float(p.attrs.get("sparsity", np.nan))
    teacher, proxy = np.concatenate(teacher), np.concatenate(proxy)
    rows = [{"system": system, "corpus": corpus, "class": c, "fidelity_f1": frame_f1(proxy[:, i], teacher[:, i]),
             "kappa": cohen_kappa(proxy[:, i], teacher[:, i]),
             "constant_f1": frame_f1(np.ones(len(teacher), bool), teacher[:, i]),
             "teacher_positive_rate": float(teacher[:, i].mean()), "proxy_positive_rate": float(proxy[:, i].mean()),
             "minutes": len(teacher) / FRAME_RATE / 60, "recon_mse": recon, "sparsity": sparsity}
            for i, c in enumerate(CLASSES) if c in known]
    return pd.DataFrame(rows)


def fidelity_wide(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows: proxies; columns: corpus/class fidelity F1 (%) and kappa, then reconstruction error and sparsity
    per corpus. A last row ``constant output`` holds the floor: the F1 of deciding each class everywhere."""
    keys = list(dict.fromkeys(zip(rows["corpus"], rows["class"])))
    corpora = list(dict.fromkeys(rows["corpus"]))
    out = []
    for system, g in rows.groupby("system", sort=False):
        by = g.set_index(["corpus", "class"])
        rec = {"system": system}
        for c, k in keys:
            rec[f"{c} / {k} F1"] = 100 * by["fidelity_f1"].get((c, k), np.nan)
            if "kappa" in by:
                rec[f"{c} / {k} kappa"] = by["kappa"].get((c, k), np.nan)
        first = g.groupby("corpus", sort=False)[["recon_mse", "sparsity"]].first()
        for m in ("recon_mse", "sparsity"):
            for c in corpora:
                rec[f"{c} {m}"] = first[m].get(c, np.nan)
        out.append(rec)
    if "constant_f1" in rows:
        floor = rows.groupby(["corpus", "class"], sort=False)["constant_f1"].first()
        rec = {"system": "constant output"}
        for c, k in keys:  # a constant output agrees with anything only by chance: kappa 0
            rec.update({f"{c} / {k} F1": 100 * floor[(c, k)], f"{c} / {k} kappa": 0.0})
        out.append(rec)
    return pd.DataFrame(out)


def fidelity_sets(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per system, set (corpus, or corpus:split) and class: the minutes of audio, how often the teacher
    and the system decide the class (%), agreement F1 (%) and kappa, so that a proxy which agrees on one
    corpus and not on held-back audio of another kind shows it."""
    out = rows[["system", "corpus", "class"]].rename(columns={"corpus": "set"})
    if "minutes" in rows:
        out["minutes"] = rows["minutes"]
    out["teacher %"] = 100 * rows["teacher_positive_rate"]
    if "proxy_positive_rate" in rows:
        out["system %"] = 100 * rows["proxy_positive_rate"]
    out["F1"] = 100 * rows["fidelity_f1"]
    out["kappa"] = rows["kappa"]
    return out.sort_values(["set", "class"], kind="stable")
