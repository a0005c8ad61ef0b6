"""Proxy training by distillation (METHOD §5): ``alpha KL + beta MSE(X, W H) + gamma |H|``, Adam, early
stopping on the dev total loss, best checkpoint kept. The KL is ``KL(teacher || proxy)`` (setting
``kd_direction: teacher_proxy``, the default) or ``KL(proxy || teacher)`` (``proxy_teacher``, the authors'
code), computed from the logits (:mod:`proxyseg.proxy.loss`).

Outputs in ``out_dir``, written only once training has ended (each under a temporary name, then renamed;
``model.pt`` last), so a killed job leaves no checkpoint that looks finished; the epochs are in the log:
``curve.tsv`` (epoch, train_loss, dev_loss, dev_kd, dev_nmf, dev_l1, lr, seconds; the dev terms are
unweighted), ``curve.png``, ``train.json`` and ``model.pt`` ({"state_dict", "hparams", "provenance"}, the
best epoch; load it with :func:`proxyseg.proxy.model.load_proxy`). The checkpoint has no time, host or
absolute path (identical runs give identical bytes); ``train.json`` has the full provenance.

Dictionary modes (:data:`proxyseg.proxy.model.DICTIONARY_MODES`): ``fixed`` (default: the pre-learned
NMF dictionary, frozen, the paper's "pre-learned W"), ``learned`` (trained jointly from the pre-learned
W, kept non-negative with unit-norm columns: ``W = normalise_columns(ReLU(W_param))``, L2I's choice) and
``learned_random`` (the authors' code: trained from a random start, unconstrained).
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from tqdm import tqdm

from proxyseg.atomic import atomic_open, atomic_path
from proxyseg.errors import InputError
from proxyseg.frames import CLASSES, FRAME_RATE
from proxyseg.provenance import portable_path, provenance, seed_everything, without_machine
from proxyseg.proxy.data import INPUTS, Pair, ProxyDevCrops, ProxyTrainCrops, default_steps_per_epoch
from proxyseg.proxy.loss import KD_DIRECTIONS, distillation_loss
from proxyseg.proxy.model import DICTIONARY_MODES, PSI_DEFAULTS, Proxy
from proxyseg.teacher.model import resolve_device
from proxyseg.training import check_lr_schedule, make_ema, make_loader, make_scheduler

logger = logging.getLogger("proxyseg.proxy")

DEFAULT_SETTINGS: dict[str, Any] = {
    "input": "wavlm",
    "dictionary": "fixed",
    "alpha": 10.0,
    "beta": 1.0,
    "gamma": 0.1,
    "kd_direction": "teacher_proxy",  # KL(teacher || proxy); "proxy_teacher": KL(proxy || teacher) (authors' code)
    "lr": 1e-3,
    "lr_schedule": "constant",  # or "cosine": decays to 0 over max_epochs x steps_per_epoch steps
    "batch_size": 32,
    "crop_seconds": 4.0,
    "max_epochs": 100,
    "patience": 10,
    "steps_per_epoch": None,
    "num_workers": 0,
    "device": "auto",
    "preload_mb": 2048.0,  # train/dev data up to this size are read into memory once (0 = stream from HDF5)
    "ema": 0.0,            # > 0: evaluate and keep an exponential moving average of the weights (decay/step)
    **PSI_DEFAULTS,
}


def proxy_settings(settings: dict | None) -> dict:
    """Defaults filled in, types checked; an unknown key or a bad value is an ``InputError``."""
    settings = dict(settings or {})
    unknown = set(settings) - set(DEFAULT_SETTINGS)
    if unknown:
        raise InputError(None, f"unknown proxy setting(s) {sorted(unknown)}; known: {sorted(DEFAULT_SETTINGS)}")
    out = {**DEFAULT_SETTINGS, **{k: v for k, v in settings.items() if v is not None or k == "steps_per_epoch"}}
    try:
        for key in ("batch_size", "max_epochs", "patience", "num_workers", *PSI_DEFAULTS):
            out[key] = int(out[key])
        for key in ("alpha", "beta", "gamma", "lr", "crop_seconds", "preload_mb", "ema"):
            out[key] = float(out[key])
        if out["steps_per_epoch"] is not None:
            out["steps_per_epoch"] = int(out["steps_per_epoch"])
    except (TypeError, ValueError) as err:
        raise InputError(None, f"invalid proxy settings ({err}): {settings}") from err
    out["input"], out["dictionary"], out["device"] = str(out["input"]), str(out["dictionary"]), str(out["device"])
    out["kd_direction"] = str(out["kd_direction"])
    out["lr_schedule"] = check_lr_schedule(out["lr_schedule"], "proxy setting")
    if out["input"] not in INPUTS:
        raise InputError(None, f"proxy setting input={out['input']!r}: choose one of {INPUTS}")
    if out["dictionary"] not in DICTIONARY_MODES:
        raise InputError(None, f"proxy setting dictionary={out['dictionary']!r}: choose one of {DICTIONARY_MODES}")
    if out["kd_direction"] not in KD_DIRECTIONS:
        raise InputError(None, f"proxy setting kd_direction={out['kd_direction']!r}: choose one of {KD_DIRECTIONS} "
                         "(teacher_proxy = KL(teacher || proxy), proxy_teacher = KL(proxy || teacher))")
    bad = [k for k in ("alpha", "beta", "gamma") if not (math.isfinite(out[k]) and out[k] >= 0)]
    if (bad or out["batch_size"] < 1 or out["max_epochs"] < 1 or out["patience"] < 1 or out["crop_seconds"] <= 0
            or out["lr"] <= 0 or out["num_workers"] < 0 or not out["preload_mb"] >= 0 or not 0 <= out["ema"] < 1
            or (out["steps_per_epoch"] is not None and out["steps_per_epoch"] < 1)):
        raise InputError(None, f"invalid proxy settings: {out}")
    return out


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


def _terms(model: Proxy, inp: torch.Tensor, logits: torch.Tensor, x: torch.Tensor, s: dict,
           device: torch.device) -> dict[str, torch.Tensor]:
    out = model(inp.to(device, non_blocking=True).float())
    return distillation_loss(out, logits.to(device, non_blocking=True).float(),
                             x.to(device, non_blocking=True).float(), s["alpha"], s["beta"], s["gamma"],
                             kd_direction=s["kd_direction"])


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


def _write_curve_tsv(path: Path, rows: list[dict]):
    with atomic_open(path) as handle:
        handle.write("\t".join(CURVE_COLUMNS) + "\n")
        for r in rows:
            handle.write(f"{r['epoch']}\t{r['train_loss']:.6f}\t{r['dev_loss']:.6f}\t{r['dev_kd']:.6f}\t"
                         f"{r['dev_nmf']:.6f}\t{r['dev_l1']:.6f}\t{r['lr']:.6g}\t{r['seconds']:.2f}\n")


def _write_curve_png(path: Path, rows: list[dict], best_epoch: int, title: str):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(fig)
    epochs = [r["epoch"] for r in rows]
    ax = fig.add_subplot(1, 2, 1)
    ax.plot(epochs, [r["train_loss"] for r in rows], marker=".", label="train")
    ax.plot(epochs, [r["dev_loss"] for r in rows], marker=".", label="dev")
    best = next((r for r in rows if r["epoch"] == best_epoch), None)
    if best is not None:
        ax.axvline(best_epoch, color="grey", linestyle="--", linewidth=1)
        ax.plot([best_epoch], [best["dev_loss"]], marker="*", markersize=12, color="C3",
                label=f"best (epoch {best_epoch})")
    ax.set_ylabel("total loss")
    ax.set_title(title)
    ax2 = fig.add_subplot(1, 2, 2)
    for key, label in (("dev_kd", "KL (teacher || proxy)"), ("dev_nmf", "MSE(X, WH)"), ("dev_l1", "mean |H|")):
        values = [r[key] for r in rows]
        ax2.plot(epochs, values, marker=".", label=label)
    if all(r[k] > 0 for r in rows for k in ("dev_kd", "dev_nmf", "dev_l1")):
        ax2.set_yscale("log")
    ax2.set_title("dev loss terms (unweighted)")
    for a in (ax, ax2):
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
        a.set_xlabel("epoch")
        a.grid(alpha=0.3)
        a.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


def _dictionary_stats(model: Proxy, w0: torch.Tensor) -> dict:
    w = model.W.detach().cpu().float()
    norms = w.norm(dim=0)
    return {"W_min": float(w.min()), "W_column_norm_min": float(norms.min()),
            "W_column_norm_max": float(norms.max()),
            "W_relative_change": float((w - w0).norm() / w0.norm().clamp(min=1e-12))}


def train_proxy(train_pairs: Sequence[Pair], dev_pairs: Sequence[Pair], dictionary_npz: str | os.PathLike,
                out_dir: str | os.PathLike, settings: dict | None = None, seed: int = 0) -> dict:
    """Distil the teacher into an NMF proxy on (dump.h5, spectrogram.h5) pairs; early stopping on the dev
    total loss. Returns the ``train.json`` record. Same seed and data give the same checkpoint on CPU."""
    s = proxy_settings(settings)
    if not train_pairs:
        raise InputError(None, "proxy training needs at least one (teacher dump, spectrogram) training pair")
    if not dev_pairs:
        raise InputError(None, "proxy training needs at least one (teacher dump, spectrogram) dev pair "
                               "(early stopping is on the dev loss)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(s["device"])
    crop_frames = int(round(s["crop_seconds"] * FRAME_RATE))
    seed_everything(seed)
    torch.backends.cudnn.benchmark = False

    train_ds = ProxyTrainCrops(train_pairs, crop_frames, s["input"], num_items=1, seed=seed)
    dev_ds = ProxyDevCrops(dev_pairs, crop_frames, s["input"])
    if (dev_ds.in_channels, dev_ds.n_freq) != (train_ds.in_channels, train_ds.n_freq):
        raise InputError(dev_ds.pairs[0][0], f"dev data have (C, F) = {(dev_ds.in_channels, dev_ds.n_freq)} "
                         f"but training data {(train_ds.in_channels, train_ds.n_freq)}")
    w = load_dictionary(dictionary_npz, train_ds.n_freq)
    for ds in (train_ds, dev_ds):
        ds.preload(s["preload_mb"])
    steps = s["steps_per_epoch"] or default_steps_per_epoch(train_ds.total_frames, crop_frames, s["batch_size"])
    train_ds.num_items = steps * s["batch_size"]

    w0 = torch.from_numpy(w)
    model = Proxy(train_ds.in_channels, w0, s["dictionary"], seed=seed,
                  **{k: s[k] for k in PSI_DEFAULTS}).to(device)
    w_init = model.W.detach().cpu().float().clone()
    hparams = {**model.hparams, "crop_frames": crop_frames, "frame_rate": FRAME_RATE, "classes": list(CLASSES),
               "input": s["input"], "dictionary": s["dictionary"], "dictionary_npz": portable_path(dictionary_npz),
               "settings": s}
    n_params = model.num_parameters()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=s["lr"])
    scheduler = make_scheduler(optimizer, s["lr_schedule"], s["max_epochs"] * steps)
    ema = make_ema(model, s["ema"])
    pin = device.type == "cuda"
    train_loader = make_loader(train_ds, s["batch_size"], s["num_workers"], seed, pin)
    dev_loader = make_loader(dev_ds, s["batch_size"], s["num_workers"], seed, pin)
    prov = provenance(stage="proxy", seed=seed, settings=s, device=str(device),
                      dictionary=portable_path(dictionary_npz),
                      train=[list(map(portable_path, p)) for p in train_pairs],
                      dev=[list(map(portable_path, p)) for p in dev_pairs])
    logger.info("proxy (%s input, %s W): %d train files (%d frames), %d dev files (%d crops), C=%d F=%d K=%d, "
                "%d params, crop %d frames, %d steps x batch %d per epoch, device %s",
                s["input"], s["dictionary"], len(train_ds.entries), train_ds.total_frames, len(dev_ds.entries),
                len(dev_ds), train_ds.in_channels, w.shape[0], w.shape[1], n_params, crop_frames, steps,
                s["batch_size"], device)

    rows: list[dict] = []
    best_loss, best_epoch, best_state, best_dev = math.inf, 0, None, {}
    t_start = time.time()
    train_steps = 0
    train_seconds = 0.0
    try:
        for epoch in range(1, s["max_epochs"] + 1):
            t0 = time.time()
            train_ds.set_epoch(epoch)
            model.train()
            total, count = 0.0, 0
            bar = tqdm(train_loader, desc=f"proxy epoch {epoch}", file=sys.stderr, leave=False,
                       dynamic_ncols=True, mininterval=1.0)
            for inp, logits, x in bar:
                terms = _terms(model, inp, logits, x, s, device)
                optimizer.zero_grad(set_to_none=True)
                terms["loss"].backward()
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
                if ema is not None:
                    ema.update_parameters(model)
                total += float(terms["loss"].detach()) * inp.shape[0]
                count += inp.shape[0]
                train_steps += 1
                bar.set_postfix(loss=f"{total / max(count, 1):.4f}")
            bar.close()
            train_seconds += time.time() - t0
            train_loss = total / count if count else float("nan")
            if not math.isfinite(train_loss):
                raise RuntimeError(f"proxy training diverged at epoch {epoch} (train loss {train_loss}); "
                                   "try a lower lr")
            scored = model if ema is None else ema.module
            dev = evaluate(scored, dev_loader, device, s)
            improved = dev["loss"] < best_loss
            if improved:
                best_loss, best_epoch, best_dev = dev["loss"], epoch, dev
                best_state = {k: v.detach().cpu().clone() for k, v in scored.state_dict().items()}
            rows.append({"epoch": epoch, "train_loss": train_loss, "dev_loss": dev["loss"], "dev_kd": dev["kd"],
                         "dev_nmf": dev["nmf"], "dev_l1": dev["l1"], "lr": optimizer.param_groups[0]["lr"],
                         "seconds": time.time() - t0})
            logger.info("proxy epoch %d/%d: train %.4f dev %.4f (kd %.4f nmf %.4f l1 %.4f)%s (best %.4f @ %d) "
                        "%.1f s", epoch, s["max_epochs"], train_loss, dev["loss"], dev["kd"], dev["nmf"],
                        dev["l1"], " *" if improved else "", best_loss, best_epoch, rows[-1]["seconds"])
            if epoch - best_epoch >= s["patience"]:
                logger.info("proxy: early stop after epoch %d (no dev improvement for %d epochs)",
                            epoch, s["patience"])
                break
    finally:
        train_ds.close()
        dev_ds.close()

    if best_state is None:
        raise RuntimeError("proxy training produced no finite dev loss: check the dev dump and spectrograms")
    best_model = copy.deepcopy(model).cpu()
    best_model.load_state_dict(best_state)
    _write_curve_tsv(out_dir / "curve.tsv", rows)
    _write_curve_png(out_dir / "curve.png", rows, best_epoch,
                     f"proxy ({s['input']} input, {s['dictionary']} W)")
    record = {
        "best_epoch": best_epoch,
        "best_dev_loss": best_loss,
        "best_dev_kd": best_dev["kd"],
        "best_dev_nmf": best_dev["nmf"],
        "best_dev_l1": best_dev["l1"],
        "best_train_loss": next(r["train_loss"] for r in rows if r["epoch"] == best_epoch),
        "epochs_run": len(rows),
        "stopped_early": len(rows) < s["max_epochs"],
        "settings": s,
        "seed": seed,
        "device": str(device),
        "num_params": n_params,
        "hparams": hparams,
        "crop_frames": crop_frames,
        "steps_per_epoch": steps,
        "seconds_per_step": train_seconds / max(train_steps, 1),
        "train_files": len(train_ds.entries),
        "train_frames": train_ds.total_frames,
        "dev_files": len(dev_ds.entries),
        "dev_crops": len(dev_ds),
        "dictionary_npz": portable_path(dictionary_npz),
        "dictionary": _dictionary_stats(best_model, w_init),
        "seconds": time.time() - t_start,
        "provenance": prov,
    }
    with atomic_open(out_dir / "train.json") as handle:
        json.dump(record, handle, indent=2, default=str)
        handle.write("\n")
    with atomic_open(out_dir / "model.pt", "wb") as handle:  # a file object: bytes independent of the file name
        torch.save({"state_dict": best_state, "hparams": hparams,
                    "provenance": {**without_machine(prov), "epoch": best_epoch, "dev_loss": best_loss}}, handle)
    return record
