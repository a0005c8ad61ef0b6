"""Proxy training by distillation (METHOD §5): ``alpha KL + beta MSE(X, W H) + gamma |H|``, Adam, early
stopping on the dev total loss, best checkpoint kept. The KL is ``KL(teacher || proxy)`` (setting
``kd_direction: teacher_proxy``, the default) or ``KL(proxy || teacher)`` (``proxy_teacher``, the authors'
code), computed from the logits (:mod:`proxyseg.proxy.loss`).

Outputs in ``out_dir``, written only once training has ended (each under a temporary name, then renamed;
``model.pt`` last), so a killed job leaves no checkpoint that looks finished; the epochs are in the log:
``curve.tsv`` (epoch, train_loss, dev_loss, dev_kd, dev_nmf, dev_l1, lr, seconds; the dev terms are
unweighted), ``curve.png``, ``train.json`` and ``model.pt`` ({"state_dict", "hparams", "provenance"}, the
best epoch; load it with :func:`proxyseg.proxy.model.load_proxy`). The checkpoint has no time, host or
absolute path (identical runs give identical bytes); ``train.json`` has the full provenance. A killed job
run again resumes after its last finished epoch (``out_dir/.resume.pt``, :mod:`proxyseg.training.resume`).

Dictionary modes (:data:`proxyseg.proxy.model.DICTIONARY_MODES`): ``fixed`` (default: the pre-learned
NMF dictionary, frozen, the paper's "pre-learned W"), ``learned`` (trained jointly from the pre-learned
W, kept non-negative with unit-norm columns: ``W = normalise_columns(ReLU(W_param))``, L2I's choice) and
``learned_random`` (the authors' code: trained from a random start, unconstrained).
"""

from __future__ import annotations

import logging
import os
from contextlib import closing
from typing import Sequence

import numpy as np
import torch

from proxyseg.core.errors import InputError
from proxyseg.core.frames import CLASSES, FRAME_RATE
from proxyseg.core.provenance import portable_path, provenance
from proxyseg.settings import Inference, Runtime, Scoring
from proxyseg.settings import Proxy as ProxySettings
from proxyseg.proxy.calibrate import calibrate
from proxyseg.proxy.data import Pair, ProxyDevCrops, ProxyTrainCrops
from proxyseg.proxy.loss import distillation_loss
from proxyseg.proxy.model import Proxy
from proxyseg.training import (Loop, ResumeFile, begin, data_record, epoch_data, fingerprint, make_ema,
                               make_scheduler, write_outputs)

logger = logging.getLogger("proxyseg.proxy")

def proxy_settings(settings: ProxySettings | dict | None) -> ProxySettings:
    """Defaults filled in, types and bounds checked (:class:`proxyseg.settings.Proxy`)."""
    return ProxySettings.parse(settings, "proxy settings")


def load_dictionary(path: str | os.PathLike, n_freq: int | None = None) -> np.ndarray:
    """``W`` (F, K) float32 from an NMF ``dictionary.npz``; checks it is finite, non-negative and (when
    given) has ``n_freq`` rows."""
    try:
        with np.load(path) as npz:
            if "W" not in npz:
                raise InputError(path, f"no 'W' array in the dictionary (keys: {sorted(npz.files)})")
            w = np.asarray(npz["W"], dtype=np.float32)
    except (OSError, ValueError) as err:
        raise InputError(path, f"cannot read the NMF dictionary ({err})") from err
    if w.ndim != 2 or min(w.shape) < 1:
        raise InputError(path, f"W has shape {w.shape}, expected (F, K)")
    if not np.isfinite(w).all() or (w < 0).any():
        raise InputError(path, "W must be finite and non-negative")
    if n_freq is not None and w.shape[0] != n_freq:
        raise InputError(path, f"W has F = {w.shape[0]} frequency bins but the spectrograms have {n_freq}: "
                         "the dictionary and the spectrogram cache must use the same STFT (n_fft)")
    return w


def _terms(model: Proxy, inp: torch.Tensor, logits: torch.Tensor, x: torch.Tensor, s: ProxySettings,
           device: torch.device) -> dict[str, torch.Tensor]:
    out = model(inp.to(device, non_blocking=True).float())
    return distillation_loss(out, logits.to(device, non_blocking=True).float(),
                             x.to(device, non_blocking=True).float(), s.alpha, s.beta, s.gamma,
                             kd_direction=s.kd_direction)


@torch.no_grad()
def evaluate(model: Proxy, loader, device: torch.device, settings: dict) -> dict[str, float]:
    """Dev loss and its (unweighted) terms, averaged over every frame of every crop."""
    model.eval()
    sums = {"loss": 0.0, "kd": 0.0, "nmf": 0.0, "l1": 0.0}
    n = 0
    for inp, logits, x in loader:
        terms = _terms(model, inp, logits, x, settings, device)
        b = inp.shape[0]  # every crop has the same length: batch means weighted by batch size
        for key in sums:
            sums[key] += float(terms[key]) * b
        n += b
    return {k: (v / n if n else float("nan")) for k, v in sums.items()}


CURVE_COLUMNS = ("epoch", "train_loss", "dev_loss", "dev_kd", "dev_nmf", "dev_l1", "lr", "seconds")


def _dictionary_stats(model: Proxy, w0: torch.Tensor) -> dict:
    w = model.W.detach().cpu().float()
    norms = w.norm(dim=0)
    return {"W_min": float(w.min()), "W_column_norm_min": float(norms.min()),
            "W_column_norm_max": float(norms.max()),
            "W_relative_change": float((w - w0).norm() / w0.norm().clamp(min=1e-12))}


def train_proxy(train_pairs: Sequence[Pair], dev_pairs: Sequence[Pair], dictionary_npz: str | os.PathLike,
                out_dir: str | os.PathLike, settings: ProxySettings | dict | None = None, seed: int = 0,
                runtime: Runtime | dict | None = None, calibration_pairs: Sequence[Pair] = (),
                inference: Inference | dict | None = None, threshold: float = Scoring.threshold) -> dict:
    """Distil the teacher into an NMF proxy on (dump.h5, spectrogram.h5) pairs; early stopping on the dev
    total loss. Returns the ``train.json`` record. Same seed and data give the same checkpoint on CPU.

    With the setting ``calibrate`` (a list of classes), the best weights' biases of those classes are then
    shifted on ``calibration_pairs`` (the dev splits of the scored corpora), inferred with ``inference``'s
    window settings, to decide like the teacher at ``threshold`` (:mod:`proxyseg.proxy.calibrate`)."""
    s = proxy_settings(settings)
    rt = Runtime.parse(runtime)
    if s.calibrate and not calibration_pairs:
        raise InputError(None, "calibrate needs the dev splits of the scored corpora (--calibrate "
                               "DUMP.h5 SPECTROGRAMS.h5 ...); the workflow passes them when a scored corpus has one")
    out_dir, device, crop_frames = begin("proxy", "(teacher dump, spectrogram)", train_pairs, dev_pairs, out_dir,
                                         s, seed, rt)
    train_ds = ProxyTrainCrops(train_pairs, crop_frames, s["input"], num_items=1, seed=seed, gain_db=s.gain_db)
    dev_ds = ProxyDevCrops(dev_pairs, crop_frames, s["input"])
    if (dev_ds.in_channels, dev_ds.n_freq) != (train_ds.in_channels, train_ds.n_freq):
        raise InputError(dev_ds.pairs[0][0], f"dev data have (C, F) = {(dev_ds.in_channels, dev_ds.n_freq)} "
                         f"but training data {(train_ds.in_channels, train_ds.n_freq)}")
    w = load_dictionary(dictionary_npz, train_ds.n_freq)
    steps, train_loader, dev_loader = epoch_data(train_ds, dev_ds, s, rt, crop_frames, seed, device)

    w0 = torch.from_numpy(w)
    model = Proxy(train_ds.in_channels, w0, s["dictionary"], seed=seed,
                  **{k: s[k] for k in s.PSI}).to(device)
    w_init = model.W.detach().cpu().float().clone()
    hparams = {**model.hparams, "crop_frames": crop_frames, "frame_rate": FRAME_RATE, "classes": list(CLASSES),
               "input": s["input"], "dictionary": s["dictionary"], "dictionary_npz": portable_path(dictionary_npz),
               "settings": s.as_dict()}
    n_params = model.num_parameters()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=s["lr"])
    loop = Loop("proxy", model, optimizer, make_scheduler(optimizer, s["lr_schedule"], s["max_epochs"] * steps),
                make_ema(model, s["ema"]), loaders=(train_loader, dev_loader), log=logger)
    prov = provenance(stage="proxy", seed=seed, settings=s, device=str(device),
                      dictionary=portable_path(dictionary_npz),
                      train=[list(map(portable_path, p)) for p in train_pairs],
                      dev=[list(map(portable_path, p)) for p in dev_pairs])
    logger.info("proxy (%s input, %s W): %d train files (%d frames), %d dev files (%d crops), C=%d F=%d K=%d, "
                "%d params, crop %d frames, %d steps x batch %d per epoch, device %s",
                s["input"], s["dictionary"], len(train_ds.entries), train_ds.total_frames, len(dev_ds.entries),
                len(dev_ds), train_ds.in_channels, w.shape[0], w.shape[1], n_params, crop_frames, steps,
                s["batch_size"], device)

    def batch_loss(batch):
        inp, logits, x = batch
        loss = _terms(model, inp, logits, x, s, device)["loss"]
        return loss, float(loss.detach()) * inp.shape[0], inp.shape[0]

    inputs = {"train": train_pairs, "dev": dev_pairs, "dictionary": dictionary_npz}
    resume = ResumeFile(out_dir, fingerprint("proxy", s, seed, inputs, hparams), logger)
    with closing(train_ds), closing(dev_ds):
        loop.fit(s["max_epochs"], loop.epochs(train_loader, batch_loss),
                 lambda scored: evaluate(scored, dev_loader, device, s), s["patience"], resume)
    best_model = loop.best_model("check the dev dump and spectrograms")
    calibration = None
    if s.calibrate:
        inf = Inference.parse(inference)
        loop.best_state, calibration = calibrate(loop.best_state, hparams, calibration_pairs, out_dir, s.calibrate,
                                                 threshold, inf.step, inf.aggregate, str(device))
    record = {
        **loop.summary(),
        "settings": s.as_dict(),
        "runtime": rt.as_dict(),
        "seed": seed,
        "device": str(device),
        "num_params": n_params,
        "hparams": hparams,
        "crop_frames": crop_frames,
        "steps_per_epoch": steps,
        "seconds_per_step": loop.train_seconds / max(loop.steps, 1),
        **data_record(train_ds, dev_ds),
        "dictionary_npz": portable_path(dictionary_npz),
        "dictionary": _dictionary_stats(best_model, w_init),
        "seconds": loop.elapsed,
        "calibration": calibration,
        "provenance": prov,
    }
    write_outputs(out_dir, loop, record, hparams, prov, CURVE_COLUMNS,
                  f"proxy ({s['input']} input, {s['dictionary']} W)", "total loss",
                  {"dev_kd": "KL (teacher || proxy)", "dev_nmf": "MSE(X, WH)", "dev_l1": "mean |H|"})
    return record
