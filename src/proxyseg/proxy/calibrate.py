"""Decision calibration of a distilled proxy (beyond the paper; ``calibrate: [classes]``, off by default).

A proxy trained on a mix of corpora is calibrated to that mix. On a corpus unlike most of it (far-field
meeting excerpts among telephone prompts and music) it says a class less (or more) often than its black
box: on the AMI development files the proxies of Silero and pyannote put speech on 6-10 % fewer frames
than their black box at the threshold of 0.5 (docs/EXPERIMENTS.md). Calibration is a prior-shift correction:
each named class's bias ``b_c`` of ``Θ`` is shifted so that, at the scoring threshold, the proxy decides
the class on as many frames of the dev splits of the corpora it is scored on (their domain) as the teacher
does. The threshold ``t_c`` (0.05 to 0.95 by 0.01) at which the proxy's rate of positive frames is nearest
the teacher's becomes the bias shift ``logit(threshold) - logit(t_c)``. The rate, not the threshold of best
frame agreement: agreement is flat where the teacher says yes on most frames (on the dev minute of AMI,
84 % speech for pyannote, its fixed-W proxy's F1 stayed within 94.7-95.0 over thresholds 0.2 to 0.6, so
the argmax was noise); the rate is set by the data. Only the teacher's outputs are read (no labels), so an
unlabelled corpus can be calibrated on, and no test file is. Relevances ``z_k Θ[c, k]``, prototypes and
the masks do not involve the bias: the explanations are unchanged.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

import h5py
import numpy as np
import torch

from proxyseg.core.agreement import frame_f1
from proxyseg.core.errors import InputError
from proxyseg.core.frames import CLASSES
from proxyseg.core.provenance import portable_path
from proxyseg.proxy.data import Pair
from proxyseg.teacher.dumpfile import dump_groups, known_classes

logger = logging.getLogger("proxyseg.proxy")

#: thresholds tried, 0.05 to 0.95 by 0.01
GRID = np.round(np.arange(5, 96) / 100.0, 2)


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def rate(decisions: np.ndarray) -> float:
    """The fraction of frames decided positive."""
    return float(np.mean(decisions)) if len(decisions) else 0.0


def matching_thresholds(teacher: np.ndarray, proxy: np.ndarray, classes: Sequence[str], threshold: float) -> dict:
    """Per class of ``classes``: the threshold of :data:`GRID` at which the ``proxy`` probabilities (T, 4)
    decide the class on the fraction of frames nearest the teacher's (``teacher >= threshold``); ties go to
    the one nearest ``threshold`` (a class neither decides anywhere keeps it). Returns ``{class:
    {"threshold", "teacher_rate", "proxy_rate_before", "agreement_before"}}`` (rates and the frame F1 with
    the teacher's decisions in [0, 1], before: at ``threshold`` itself)."""
    out = {}
    for c, name in enumerate(CLASSES):
        if name not in classes:
            continue
        target = teacher[:, c] >= threshold
        wanted = rate(target)
        gaps = np.array([abs(rate(proxy[:, c] >= t) - wanted) for t in GRID])
        best = int(np.lexsort((np.abs(GRID - threshold), np.round(gaps, 9)))[0])  # rounded: float noise is no tie-break
        out[name] = {"threshold": float(GRID[best]), "teacher_rate": wanted,
                     "proxy_rate_before": rate(proxy[:, c] >= threshold),
                     "agreement_before": float(frame_f1(proxy[:, c] >= threshold, target))}
    return out


def _probs(checkpoint: Path, pairs: Sequence[Pair], work: Path, step_fraction: float, aggregate: str,
           device: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Teacher and proxy probabilities on every frame of ``pairs`` (the workflow's own inference)."""
    from proxyseg.proxy.infer import infer_proxy, sigmoid

    teacher, proxy, known = [], [], list(CLASSES)
    for i, (dump_h5, spec_h5) in enumerate(pairs):
        out = work / f"calibration_{i}.h5"
        infer_proxy(checkpoint, dump_h5, spec_h5, out, step_fraction=step_fraction, device=device,
                    aggregate=aggregate)
        with h5py.File(dump_h5, "r") as dump, h5py.File(out, "r") as inf:
            known, groups = known_classes(dump), dump_groups(dump)
            for uri in sorted(inf):
                p = inf[uri]["probs"][()]
                t = sigmoid(np.nan_to_num(np.asarray(groups[uri]["logits"], dtype=np.float32), nan=0.0))
                n = min(len(p), len(t))
                teacher.append(t[:n])
                proxy.append(p[:n])
        out.unlink()
    return np.concatenate(teacher), np.concatenate(proxy), known


def calibrate(state: dict, hparams: dict, pairs: Sequence[Pair], out_dir: str | os.PathLike, classes: Sequence[str],
              threshold: float, step_fraction: float, aggregate: str, device: str = "cpu") -> tuple[dict, dict]:
    """The proxy's ``state`` (its state_dict) with the bias of each of ``classes`` shifted (module
    docstring), and the record for ``train.json``: per class the chosen threshold, the shift, the teacher's
    rate and the proxy's, and the dev agreement with the teacher, before and after (measured again with the
    shifted weights). A class the teacher does not know (a black box's) is an error: there is nothing to
    match."""
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"the scoring threshold must be in (0, 1) to calibrate, got {threshold}")
    for stale in Path(out_dir).glob(".calibrate*"):  # a killed run's working files
        shutil.rmtree(stale, ignore_errors=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".calibrate") as tmp:
        work = Path(tmp)
        ckpt = work / "model.pt"
        torch.save({"state_dict": state, "hparams": hparams}, ckpt)
        teacher, proxy, known = _probs(ckpt, pairs, work, step_fraction, aggregate, device)
        unknown = sorted(set(classes) - set(known))
        if unknown:
            raise InputError(pairs[0][0], f"calibrate names {unknown}, which this teacher does not know "
                                          f"(it knows {list(known)}): leave them out of calibrate")
        chosen = matching_thresholds(teacher, proxy, classes, threshold)
        shifted = {k: v.clone() for k, v in state.items()}
        for name, r in chosen.items():
            r["bias_shift"] = _logit(threshold) - _logit(r["threshold"])
            shifted["theta.bias"][CLASSES.index(name)] += r["bias_shift"]
        torch.save({"state_dict": shifted, "hparams": hparams}, ckpt)
        teacher, proxy, _ = _probs(ckpt, pairs, work, step_fraction, aggregate, device)
    for name, r in chosen.items():
        c = CLASSES.index(name)
        r["proxy_rate_after"] = rate(proxy[:, c] >= threshold)
        r["agreement_after"] = float(frame_f1(proxy[:, c] >= threshold, teacher[:, c] >= threshold))
        logger.info("calibration, %s: threshold %.2f (bias %+.3f); dev frames decided %.1f %% -> %.1f %% "
                    "(teacher %.1f %%), agreement with the teacher %.1f -> %.1f", name, r["threshold"],
                    r["bias_shift"], 100 * r["proxy_rate_before"], 100 * r["proxy_rate_after"],
                    100 * r["teacher_rate"], 100 * r["agreement_before"], 100 * r["agreement_after"])
    record = {"threshold": threshold, "frames": int(len(teacher)), "classes": chosen,
              "pairs": [[portable_path(a), portable_path(b)] for a, b in pairs]}
    return shifted, record
