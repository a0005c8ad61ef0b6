"""Teacher inference (METHOD section 3): sliding windows of the training crop length, step 10 % of it,
overlapping outputs aggregated per frame (:mod:`proxyseg.core.aggregate`). Writes the teacher's logits and fused features S per file.

Output HDF5 (``docs/outputs.md``): one group per URI with ``logits`` float32 (T, 4) and ``features``
float16 (T, D); group attributes ``num_frames``, ``num_windows``; file attributes ``provenance`` and the
window settings. Written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Callable

import h5py
import numpy as np
import torch

from proxyseg.core import aggregate as agg
from proxyseg.core.atomic import atomic_path
from proxyseg.core.errors import InputError
from proxyseg.core.frames import CLASSES, FRAME_RATE
from proxyseg.core.provenance import provenance_json
from proxyseg.settings import Inference, Runtime
from proxyseg.core.hdf5 import h5_datasets
from proxyseg.core.device import resolve_device
from proxyseg.teacher.model import load_teacher

logger = logging.getLogger("proxyseg.teacher")


def window_starts(num_frames: int, window: int, step: int) -> list[int]:
    """Starts of the windows covering ``[0, num_frames)``: every ``step`` frames, plus one aligned to the
    end of the file; a single window at 0 when the file is not longer than a window."""
    if num_frames <= 0:
        return []
    if num_frames <= window:
        return [0]
    starts = list(range(0, num_frames - window + 1, step))
    if starts[-1] != num_frames - window:
        starts.append(num_frames - window)
    return starts


def sliding_window_average(forward: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
                           source, num_frames: int, window: int, step: int, batch_size: int = 16,
                           device: torch.device | str = "cpu",
                           prepare: Callable[[torch.Tensor], torch.Tensor] | None = None,
                           aggregate: str = agg.DEFAULT) -> tuple[np.ndarray, np.ndarray, int]:
    """Run ``forward`` on windows of ``source`` and average the overlapping outputs per frame
    (:mod:`proxyseg.core.aggregate`: the logits as probabilities with Hamming weights by default).

    ``source``: array-like ``(T, ...)`` sliceable along time (an h5py dataset is read one batch span at
    a time). ``prepare`` maps a float32 block ``(1, n, ...)`` to the model's input layout ``(1, C, n)``
    and must be pointwise in time (it is applied once per block, before windowing). ``forward`` maps
    ``(B, C, window)`` to ``(logits (B, K, window), S (B, D, window))``. Windows past the end of a short
    file are zero-padded and the outputs cropped. Returns ``(logits (T, K), S (T, D), num_windows)``.
    """
    device = torch.device(device)
    starts = window_starts(num_frames, window, step)
    weights = agg.window_weights(window, aggregate)
    logit_sum = s_sum = None
    counts = np.zeros(num_frames, dtype=np.float64)
    for b in range(0, len(starts), batch_size):
        batch = starts[b:b + batch_size]
        lo, hi = batch[0], batch[-1] + window
        block = np.asarray(source[lo:min(hi, num_frames)], dtype=np.float32)
        if block.shape[0] < hi - lo:
            pad = np.zeros((hi - lo - block.shape[0], *block.shape[1:]), dtype=np.float32)
            block = np.concatenate([block, pad], axis=0)
        x = torch.from_numpy(block).unsqueeze(0).to(device)
        x = prepare(x) if prepare is not None else x.transpose(1, 2)
        windows = torch.stack([x[0, :, s - lo:s - lo + window] for s in batch])
        logits, feats = forward(windows)
        logits = logits.float().cpu().numpy()
        feats = feats.float().cpu().numpy()
        if logit_sum is None:
            logit_sum = np.zeros((num_frames, logits.shape[1]), dtype=np.float64)
            s_sum = np.zeros((num_frames, feats.shape[1]), dtype=np.float32)
        for i, s in enumerate(batch):
            e = min(s + window, num_frames)
            w = weights[:e - s, None]
            logit_sum[s:e] += agg.summand(logits[i, :, :e - s].T, aggregate) * w
            s_sum[s:e] += feats[i, :, :e - s].T * w.astype(np.float32)
            counts[s:e] += w[:, 0]
    if logit_sum is None:
        return None, None, 0
    return (agg.finish(logit_sum / counts[:, None], aggregate), s_sum / counts[:, None].astype(np.float32),
            len(starts))


@torch.no_grad()
def dump_teacher(checkpoint: str | os.PathLike, features_h5: str | os.PathLike, out_h5: str | os.PathLike,
                 step_fraction: float = Inference.step, batch_size: int = Runtime.inference_batch_size,
                 device: str = Runtime.device, aggregate: str = Inference.aggregate) -> dict:
    """Sliding-window teacher inference on every file of ``features_h5``; writes ``out_h5`` atomically.
    ``logits`` are the aggregate of :mod:`proxyseg.core.aggregate` (``sigmoid(logits)`` is the probability).

    Returns a summary ``{"files", "frames", "windows", "window", "step"}``.
    """
    if not 0 < step_fraction <= 1:
        raise ValueError(f"step_fraction must be in (0, 1], got {step_fraction}")
    agg.check(aggregate)
    dev = resolve_device(device)
    model, hparams = load_teacher(checkpoint, dev)
    window = int(hparams["crop_frames"])
    step = max(1, int(round(window * step_fraction)))
    num_layers, dim = int(hparams["num_layers"]), int(hparams["dim"])
    features_h5, out_h5 = Path(features_h5), Path(out_h5)
    summary = {"files": 0, "frames": 0, "windows": 0, "window": window, "step": step}
    try:
        fin = h5py.File(features_h5, "r", locking=False)
    except OSError as err:
        raise InputError(features_h5, f"cannot open features ({err})") from err
    with fin, atomic_path(out_h5) as tmp:
        with h5py.File(tmp, "w") as fout:
            datasets = h5_datasets(fin)
            for uri in sorted(datasets):
                ds = datasets[uri]
                if ds.ndim != 3 or tuple(ds.shape[1:]) != (num_layers, dim):
                    raise InputError(features_h5, f"dataset {uri!r} has shape {ds.shape}, but the teacher "
                                     f"{checkpoint} expects (T, {num_layers}, {dim})")
                n = int(ds.shape[0])
                logits, feats, n_win = sliding_window_average(
                    model.forward_mixed, ds, n, window, step, batch_size, dev, prepare=model.fusion.mix,
                    aggregate=aggregate)
                if logits is None:
                    logits = np.zeros((0, len(CLASSES)), dtype=np.float32)
                    feats = np.zeros((0, dim), dtype=np.float32)
                group = fout.create_group(uri)
                group.create_dataset("logits", data=logits.astype(np.float32))
                group.create_dataset("features", data=feats.astype(np.float16))
                group.attrs["num_frames"] = n
                group.attrs["num_windows"] = n_win
                summary["files"] += 1
                summary["frames"] += n
                summary["windows"] += n_win
                logger.debug("teacher dump %s: %d frames, %d windows", uri, n, n_win)
            fout.attrs["classes"] = json.dumps(list(CLASSES))
            fout.attrs["frame_rate"] = FRAME_RATE
            fout.attrs["window_frames"] = window
            fout.attrs["step_frames"] = step
            fout.attrs["aggregate"] = aggregate
            fout.attrs["hidden_size"] = dim
            for key in ("model", "revision", "untrained", "layers", "do_normalize"):
                if key in fin.attrs:
                    fout.attrs[f"features_{key}"] = fin.attrs[key]
            fout.attrs["provenance"] = provenance_json(
                stage="teacher_dump", checkpoint=str(checkpoint), features=str(features_h5),
                step_fraction=step_fraction, window_frames=window, step_frames=step, aggregate=aggregate,
                hparams=hparams,
                device=str(dev))
    logger.info("teacher dump %s: %d files, %d frames, %d windows (window %d, step %d)", out_h5,
                summary["files"], summary["frames"], summary["windows"], window, step)
    return summary
