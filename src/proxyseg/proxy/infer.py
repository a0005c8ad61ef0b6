"""Proxy inference (METHOD §5-6): sliding windows exactly like the teacher's dump (window = the training
crop, step 10 % of it, last window aligned to the end of the file, short files zero-padded, overlapping
outputs aggregated per frame as :mod:`proxyseg.core.aggregate` says; :func:`proxyseg.teacher.dump.sliding_window_average`).

Output HDF5 (one group per URI, like the teacher's dump, so scoring treats teacher and proxies alike):

* ``probs`` float32 ``(T, 4)``: the aggregated probabilities (threshold these at 0.5);
* ``logits`` float32 ``(T, 4)``: their logits (``probs = sigmoid(logits)``; with ``logits_mean``, the
  window-averaged logits);
* ``H`` float16 ``(T, K)``: window-averaged NMF activations, same weights (proxy outputs only).

``T`` is the length of the proxy's input (the dump's features for ``input: wavlm``, the spectrogram for
``input: spectrogram``). Group attributes (proxy outputs only; the fidelity table's per-file statistics):
``num_frames``, ``num_windows``, ``recon_mse`` (mean over frames and bins of ``(X - W H)^2``, the
training's ``L_NMF``, on the frames the spectrogram and the input share), ``sparsity`` (share of the
entries of H below :data:`SPARSITY_THRESHOLD` = 1e-3), ``mean_activation`` (mean of H, the L1 term),
``kd_teacher`` (binary KL of the teacher's vs the proxy's probabilities, summed over classes, averaged
over frames, like the training's ``L_KD``). The statistics use the float32 averaged H (before the
float16 cast). Averaging over windows can only turn a zero activation into a small positive one, so
``sparsity`` of the averaged H is a lower bound of the per-window sparsity.

File attributes: ``provenance``, ``model`` ("proxy" or "teacher"), ``K``, ``input``, ``dictionary``
(mode), ``classes``, ``frame_rate``, ``window_frames``, ``step_frames``, ``aggregate``, ``sparsity_threshold`` and the
corpus-level ``recon_mse`` / ``sparsity`` / ``mean_activation`` / ``kd_teacher`` (entry-weighted over
all files), ``num_files``, ``num_frames``. Written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import h5py
import numpy as np
import torch

from proxyseg.core import aggregate as agg
from proxyseg.core.atomic import atomic_path
from proxyseg.core.errors import InputError
from proxyseg.core.frames import CLASSES, FRAME_RATE
from proxyseg.core.provenance import provenance_json
from proxyseg.settings import Inference, Runtime
from proxyseg.proxy.data import spectrogram_datasets
from proxyseg.proxy.loss import binary_kl
from proxyseg.proxy.model import load_proxy
from proxyseg.teacher.dump import sliding_window_average
from proxyseg.teacher.dumpfile import dump_groups
from proxyseg.core.device import resolve_device

logger = logging.getLogger("proxyseg.proxy")

#: An activation below this counts as zero in the ``sparsity`` statistic (H is a ReLU output, so >= 0).
SPARSITY_THRESHOLD = 1e-3

__all__ = ["SPARSITY_THRESHOLD", "infer_proxy", "teacher_probs", "sigmoid"]


def sigmoid(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))).astype(np.float32)


def _open(path: Path, what: str) -> h5py.File:
    try:
        return h5py.File(path, "r", locking=False)
    except OSError as err:
        raise InputError(path, f"cannot open {what} ({err})") from err


def _sq_error_sum(x: np.ndarray, h: np.ndarray, w: np.ndarray, chunk: int = 4096) -> float:
    """sum over (t, f) of ``(X - H W^T)^2`` for X (T, F), H (T, K), W (F, K), in chunks of frames."""
    total = 0.0
    for a in range(0, x.shape[0], chunk):
        r = x[a:a + chunk].astype(np.float32) - h[a:a + chunk] @ w.T
        total += float(np.square(r, dtype=np.float64).sum())
    return total


def _undo_calibration(model, train_json: str | os.PathLike) -> None:
    """Subtract the bias shifts that ``train.json``'s calibration record added to Θ's biases."""
    try:
        record = json.loads(Path(train_json).read_text()).get("calibration") or {}
    except (OSError, ValueError) as err:
        raise InputError(train_json, f"cannot read the proxy's training record ({err})") from err
    with torch.no_grad():
        for name, r in record.get("classes", {}).items():
            model.theta.bias[CLASSES.index(name)] -= float(r["bias_shift"])


@torch.no_grad()
def infer_proxy(checkpoint: str | os.PathLike, dump_h5: str | os.PathLike, spec_h5: str | os.PathLike,
                out_h5: str | os.PathLike, step_fraction: float = Inference.step, device: str = Runtime.device,
                batch_size: int = Runtime.inference_batch_size, aggregate: str = Inference.aggregate,
                undo_calibration: str | os.PathLike | None = None) -> dict:
    """Sliding-window proxy inference on every file of a (teacher dump, spectrogram cache) pair; writes
    ``out_h5`` atomically (nothing is left at ``out_h5`` on error). ``undo_calibration``: the proxy's
    ``train.json``, whose calibration bias shifts are taken back first (the proxy as trained, to judge
    whether calibration raised its agreement with the teacher).

    Returns a summary ``{"files", "frames", "windows", "window", "step", "recon_mse", "sparsity",
    "mean_activation", "kd_teacher"}`` (corpus-level statistics as in the file attributes).
    """
    if not 0 < step_fraction <= 1:
        raise ValueError(f"step_fraction must be in (0, 1], got {step_fraction}")
    agg.check(aggregate)
    dev = resolve_device(device)
    try:
        model, ckpt = load_proxy(checkpoint, dev)
    except (OSError, RuntimeError, KeyError, EOFError) as err:
        raise InputError(checkpoint, f"cannot load the proxy checkpoint ({err})") from err
    if undo_calibration:
        _undo_calibration(model, undo_calibration)
    hp = ckpt["hparams"]
    inp = hp.get("input", "wavlm")
    window = int(hp["crop_frames"])
    step = max(1, int(round(window * step_fraction)))
    in_channels, n_freq, k = int(hp["in_channels"]), int(hp["n_freq"]), int(hp["components"])
    w = model.W.detach().float().cpu().numpy()
    dump_h5, spec_h5, out_h5 = Path(dump_h5), Path(spec_h5), Path(out_h5)

    def forward(windows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = model(windows)
        return out["logits"], out["H"]

    totals = {"sq": 0.0, "cells": 0, "zeros": 0, "h_sum": 0.0, "h_cells": 0, "kd": 0.0, "kd_frames": 0}
    summary = {"files": 0, "frames": 0, "windows": 0, "window": window, "step": step}
    with _open(dump_h5, "teacher dump") as dh, _open(spec_h5, "spectrograms") as sh, atomic_path(out_h5) as tmp:
        groups, specs = dump_groups(dh), spectrogram_datasets(sh)
        if set(groups) != set(specs):
            only_d, only_s = sorted(set(groups) - set(specs)), sorted(set(specs) - set(groups))
            raise InputError(dump_h5, f"teacher dump and spectrograms {spec_h5} disagree: URIs only in the dump "
                             f"{only_d[:5]}, only in the spectrograms {only_s[:5]}")
        with h5py.File(tmp, "w") as fout:
            for uri in sorted(groups):
                g, xs = groups[uri], specs[uri]
                if xs.ndim != 2 or xs.shape[1] != n_freq:
                    raise InputError(spec_h5, f"dataset {uri!r} has shape {xs.shape}, but the proxy {checkpoint} "
                                     f"expects (T, {n_freq}) (its dictionary has F = {n_freq})")
                if inp == "wavlm":
                    if "features" not in g:
                        raise InputError(dump_h5, f"group {uri!r} has no 'features' (needed for input 'wavlm')")
                    source = g["features"]
                else:
                    source = xs
                if source.ndim != 2 or source.shape[1] != in_channels:
                    raise InputError(dump_h5 if inp == "wavlm" else spec_h5,
                                     f"{uri}: input has shape {source.shape}, but the proxy {checkpoint} "
                                     f"expects (T, {in_channels})")
                n = int(source.shape[0])
                teacher_logits = np.asarray(g["logits"], dtype=np.float32)
                if abs(n - xs.shape[0]) > 1 or abs(n - teacher_logits.shape[0]) > 1:
                    logger.warning("%s: input %d, spectrogram %d and teacher %d frames differ by more than one "
                                   "frame; statistics use the common frames", uri, n, xs.shape[0],
                                   teacher_logits.shape[0])
                logits, h, n_win = sliding_window_average(forward, source, n, window, step, batch_size, dev,
                                                           aggregate=aggregate)
                if logits is None:
                    logits = np.zeros((0, len(CLASSES)), dtype=np.float32)
                    h = np.zeros((0, k), dtype=np.float32)
                h = h.astype(np.float32)
                x = np.asarray(xs, dtype=np.float32)
                m = min(n, x.shape[0])
                sq = _sq_error_sum(x[:m], h[:m], w)
                zeros = int((h < SPARSITY_THRESHOLD).sum())
                mt = min(n, teacher_logits.shape[0])
                kd = float(binary_kl(torch.from_numpy(logits[:mt].T[None]),
                                     torch.from_numpy(teacher_logits[:mt].T[None]))) if mt else float("nan")

                group = fout.create_group(uri)
                group.create_dataset("probs", data=sigmoid(logits))
                group.create_dataset("logits", data=logits.astype(np.float32))
                group.create_dataset("H", data=h.astype(np.float16))
                group.attrs["num_frames"] = n
                group.attrs["num_windows"] = n_win
                group.attrs["recon_mse"] = sq / (m * n_freq) if m else float("nan")
                group.attrs["sparsity"] = zeros / h.size if h.size else float("nan")
                group.attrs["mean_activation"] = float(h.mean()) if h.size else float("nan")
                group.attrs["kd_teacher"] = kd
                totals["sq"] += sq
                totals["cells"] += m * n_freq
                totals["zeros"] += zeros
                totals["h_sum"] += float(h.sum(dtype=np.float64))
                totals["h_cells"] += h.size
                if mt:
                    totals["kd"] += kd * mt
                    totals["kd_frames"] += mt
                summary["files"] += 1
                summary["frames"] += n
                summary["windows"] += n_win
                logger.debug("proxy infer %s: %d frames, %d windows, mse %.4f, sparsity %.3f", uri, n, n_win,
                             group.attrs["recon_mse"], group.attrs["sparsity"])
            nan = float("nan")
            stats = {
                "recon_mse": totals["sq"] / totals["cells"] if totals["cells"] else nan,
                "sparsity": totals["zeros"] / totals["h_cells"] if totals["h_cells"] else nan,
                "mean_activation": totals["h_sum"] / totals["h_cells"] if totals["h_cells"] else nan,
                "kd_teacher": totals["kd"] / totals["kd_frames"] if totals["kd_frames"] else nan,
            }
            summary.update(stats)
            fout.attrs["model"] = "proxy"
            if "known_classes" in dh.attrs:  # distilled from a black box: only these classes were taught
                fout.attrs["known_classes"] = dh.attrs["known_classes"]
            fout.attrs["K"] = k
            fout.attrs["input"] = inp
            fout.attrs["dictionary"] = hp.get("dictionary", hp.get("mode", ""))
            fout.attrs["classes"] = json.dumps(list(CLASSES))
            fout.attrs["frame_rate"] = FRAME_RATE
            fout.attrs["window_frames"] = window
            fout.attrs["step_frames"] = step
            fout.attrs["aggregate"] = aggregate
            fout.attrs["sparsity_threshold"] = SPARSITY_THRESHOLD
            fout.attrs["num_files"] = summary["files"]
            fout.attrs["num_frames"] = summary["frames"]
            for key, value in stats.items():
                fout.attrs[key] = value
            fout.attrs["provenance"] = provenance_json(
                stage="proxy_infer", checkpoint=str(checkpoint), dump=str(dump_h5), spectrograms=str(spec_h5),
                step_fraction=step_fraction, window_frames=window, step_frames=step, aggregate=aggregate,
                hparams={k_: v for k_, v in hp.items() if k_ != "settings"}, settings=hp.get("settings"),
                device=str(dev))
    logger.info("proxy infer %s: %d files, %d frames, %d windows; recon MSE %.4f, sparsity %.3f, KL to teacher "
                "%.4f", out_h5, summary["files"], summary["frames"], summary["windows"], stats["recon_mse"],
                stats["sparsity"], stats["kd_teacher"])
    return summary


def teacher_probs(dump_h5: str | os.PathLike, out_h5: str | os.PathLike) -> dict:
    """The teacher's dump in the proxies' output layout (``probs`` = sigmoid(logits), ``logits``), one group
    per URI, written atomically, so that scoring treats the teacher and the proxies alike."""
    dump_h5, out_h5 = Path(dump_h5), Path(out_h5)
    summary = {"files": 0, "frames": 0}
    with _open(dump_h5, "teacher dump") as dh, atomic_path(out_h5) as tmp:
        groups = dump_groups(dh)
        with h5py.File(tmp, "w") as fout:
            for uri in sorted(groups):
                logits = np.asarray(groups[uri]["logits"], dtype=np.float32)
                if logits.ndim != 2 or logits.shape[1] != len(CLASSES):
                    raise InputError(dump_h5, f"{uri}/logits has shape {logits.shape}, expected (T, {len(CLASSES)})")
                group = fout.create_group(uri)
                group.create_dataset("probs", data=sigmoid(logits))
                group.create_dataset("logits", data=logits)
                group.attrs["num_frames"] = logits.shape[0]
                summary["files"] += 1
                summary["frames"] += int(logits.shape[0])
            fout.attrs["model"] = "teacher"
            if "known_classes" in dh.attrs:
                fout.attrs["known_classes"] = dh.attrs["known_classes"]
            fout.attrs["classes"] = json.dumps(list(CLASSES))
            fout.attrs["frame_rate"] = FRAME_RATE
            for key in ("window_frames", "step_frames"):
                if key in dh.attrs:
                    fout.attrs[key] = dh.attrs[key]
            fout.attrs["num_files"] = summary["files"]
            fout.attrs["num_frames"] = summary["frames"]
            fout.attrs["provenance"] = provenance_json(stage="teacher_probs", dump=str(dump_h5))
    logger.info("teacher probs %s: %d files, %d frames", out_h5, summary["files"], summary["frames"])
    return summary
