"""Fidelity of a proxy to its teacher (beyond the paper, from L2I): do their decisions agree, frame by frame?

Also the proxy's NMF reconstruction error and the sparsity of its activations H on the same files.
"""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd

from proxyseg.core.frames import CLASSES
from proxyseg.evaluate.scoring import frame_f1
from proxyseg.teacher.blackbox import known_classes


def fidelity_rows(system: str, corpus: str, teacher_h5, proxy_h5, threshold: float = 0.5) -> pd.DataFrame:
    """Per class: frame-level F1 of the proxy's decisions against the teacher's, over every frame of the split."""
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
             "teacher_positive_rate": float(teacher[:, i].mean()), "recon_mse": recon, "sparsity": sparsity}
            for i, c in enumerate(CLASSES) if c in known]
    return pd.DataFrame(rows)


def fidelity_wide(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows: proxies; columns: corpus/class fidelity F1 (%), then reconstruction error and sparsity per corpus."""
    f1 = rows.pivot_table(index="system", columns=["corpus", "class"], values="fidelity_f1", sort=False) * 100
    f1.columns = [f"{c} / {k} F1" for c, k in f1.columns]
    extra = rows.groupby(["system", "corpus"], sort=False)[["recon_mse", "sparsity"]].first().unstack("corpus")
    extra.columns = [f"{c} {m}" for m, c in extra.columns]
    return f1.join(extra).reset_index()
