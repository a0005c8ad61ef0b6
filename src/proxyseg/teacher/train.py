"""Teacher training (METHOD section 3): masked BCE, Adam, early stopping on the dev loss, best checkpoint.

Outputs in ``out_dir``, written only once training has ended (each under a temporary name, then renamed;
``model.pt`` last), so a killed job leaves no checkpoint that looks finished; the epochs are in the log:
``curve.tsv``, ``curve.png``, ``train.json`` and ``model.pt`` ({"state_dict", "hparams", "provenance"}, the
best epoch). The checkpoint's provenance has no time, host or absolute path (identical runs give identical
bytes); ``train.json`` has the full record.
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
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from proxyseg.atomic import atomic_open, atomic_path
from proxyseg.errors import InputError
from proxyseg.frames import CLASSES, FRAME_RATE
from proxyseg.provenance import portable_path, provenance, seed_everything, without_machine
from proxyseg.teacher.data import DevCrops, Pair, TrainCrops, default_steps_per_epoch
from proxyseg.teacher.model import TCN_DEFAULTS, Teacher, resolve_device
from proxyseg.training import check_lr_schedule, make_ema, make_loader, make_scheduler

logger = logging.getLogger("proxyseg.teacher")

DEFAULT_SETTINGS: dict[str, Any] = {
    "crop_seconds": 4.0,
    "batch_size": 64,
    "lr": 1e-3,
    "max_epochs": 100,
    "patience": 10,
    "steps_per_epoch": None,
    "num_workers": 0,
    "device": "auto",
    "weight_decay": 0.0,   # AdamW's decoupled weight decay (0 = Adam, METHOD section 3)
    "dropout": 0.0,        # share of the fused feature channels zeroed per training crop (regularisation)
    "lr_schedule": "constant",  # or "cosine": decays to 0 over max_epochs x steps_per_epoch steps
    "pos_weight": {},      # class -> weight of its positive frames in the BCE (rare classes: overlap)
    "ema": 0.0,            # > 0: evaluate and keep an exponential moving average of the weights (decay/step)
    "preload_mb": 2048.0,  # train/dev data up to this size are read into memory once (0 = stream from HDF5)
    **TCN_DEFAULTS,
}


def masked_bce_sum(logits: torch.Tensor, targets: torch.Tensor,
                   pos_weight: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of BCE-with-logits over entries whose target is not -1, number of such entries).

    ``pos_weight`` (one weight per class, shape ``(C, 1)`` for ``(B, C, T)`` logits) scales the loss of
    positive targets, as in ``torch.nn.BCEWithLogitsLoss``.
    """
    if logits.shape != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} differ in shape")
    known = targets >= 0
    loss = F.binary_cross_entropy_with_logits(logits, targets.clamp(min=0).to(logits.dtype),
                                              reduction="none", pos_weight=pos_weight)
    return torch.where(known, loss, torch.zeros_like(loss)).sum(), known.sum()


def masked_bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """BCE with logits averaged over the entries whose target is not -1 (unknown).

    Masked entries get exactly zero gradient; with no known entry the result is 0 (still differentiable).
    """
    total, count = masked_bce_sum(logits, targets)
    return total / count.clamp(min=1).to(total.dtype)


def _is_positive_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _settings(settings: dict | None) -> dict:
    settings = dict(settings or {})
    unknown = set(settings) - set(DEFAULT_SETTINGS)
    if unknown:
        raise InputError(None, f"unknown teacher setting(s) {sorted(unknown)}; known: {sorted(DEFAULT_SETTINGS)}")
    out = {**DEFAULT_SETTINGS, **{k: v for k, v in settings.items() if v is not None or k == "steps_per_epoch"}}
    for key in ("batch_size", "max_epochs", "patience", "num_workers", *TCN_DEFAULTS):
        out[key] = int(out[key])
    for key in ("crop_seconds", "lr", "weight_decay", "dropout", "ema", "preload_mb"):
        out[key] = float(out[key])
    out["lr_schedule"] = check_lr_schedule(out["lr_schedule"], "teacher setting")
    weights = out["pos_weight"] or {}
    bad = {k: v for k, v in weights.items() if k not in CLASSES or not _is_positive_number(v)} \
        if isinstance(weights, dict) else weights
    if bad:
        raise InputError(None, f"teacher pos_weight {bad}: keys must be classes {list(CLASSES)}, values > 0")
    out["pos_weight"] = {k: float(v) for k, v in weights.items()}
    if out["steps_per_epoch"] is not None:
        out["steps_per_epoch"] = int(out["steps_per_epoch"])
    if out["batch_size"] < 1 or out["max_epochs"] < 1 or out["patience"] < 1 or out["crop_seconds"] <= 0 \
            or out["weight_decay"] < 0 or not 0 <= out["dropout"] < 1 or not 0 <= out["ema"] < 1 \
            or not out["preload_mb"] >= 0:
        raise InputError(None, f"invalid teacher settings: {out}")
    return out


@torch.no_grad()
def evaluate(model: Teacher, loader: DataLoader, device: torch.device,
             pos_weight: torch.Tensor | None = None) -> float:
    """Masked BCE over every known entry of the loader (not a mean of batch means)."""
    model.eval()
    total, count = 0.0, 0
    for states, targets in loader:
        logits, _ = model(states.to(device, non_blocking=True).float())
        s, n = masked_bce_sum(logits, targets.to(device).transpose(1, 2), pos_weight)
        total += float(s)
        count += int(n)
    return total / count if count else float("nan")


def _write_curve_tsv(path: Path, rows: list[dict]):
    with atomic_open(path) as handle:
        handle.write("epoch\ttrain_loss\tdev_loss\tlr\tseconds\n")
        for r in rows:
            handle.write(f"{r['epoch']}\t{r['train_loss']:.6f}\t{r['dev_loss']:.6f}\t{r['lr']:.6g}\t"
                         f"{r['seconds']:.2f}\n")


def _write_curve_png(path: Path, rows: list[dict], best_epoch: int):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    epochs = [r["epoch"] for r in rows]
    ax.plot(epochs, [r["train_loss"] for r in rows], marker=".", label="train")
    ax.plot(epochs, [r["dev_loss"] for r in rows], marker=".", label="dev")
    best = next((r for r in rows if r["epoch"] == best_epoch), None)
    if best is not None:
        ax.axvline(best_epoch, color="grey", linestyle="--", linewidth=1)
        ax.plot([best_epoch], [best["dev_loss"]], marker="*", markersize=12, color="C3",
                label=f"best (epoch {best_epoch})")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("masked BCE")
    ax.set_title("teacher training")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


def train_teacher(train_pairs: Sequence[Pair], dev_pairs: Sequence[Pair], out_dir: str | os.PathLike,
                  settings: dict | None = None, seed: int = 0) -> dict:
    """Train the teacher on (features.h5, targets.h5) pairs; early stopping on the dev masked BCE.

    Returns the ``train.json`` record. Same seed and data give the same checkpoint on CPU.
    """
    s = _settings(settings)
    if not train_pairs:
        raise InputError(None, "teacher training needs at least one (features, targets) training pair")
    if not dev_pairs:
        raise InputError(None, "teacher training needs at least one (features, targets) dev pair "
                               "(early stopping is on the dev loss)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(s["device"])
    crop_frames = int(round(s["crop_seconds"] * FRAME_RATE))
    seed_everything(seed)
    torch.backends.cudnn.benchmark = False

    # float16 crops (as stored) are collated and copied to the device, then cast to float32 there
    train_ds = TrainCrops(train_pairs, crop_frames, num_items=1, seed=seed, states_dtype=np.float16)
    dev_ds = DevCrops(dev_pairs, crop_frames, states_dtype=np.float16)
    if (dev_ds.num_layers, dev_ds.dim) != (train_ds.num_layers, train_ds.dim):
        raise InputError(dev_ds.pairs[0][0], f"dev features have (L, D) = {(dev_ds.num_layers, dev_ds.dim)} "
                         f"but training features {(train_ds.num_layers, train_ds.dim)}")
    for ds in (train_ds, dev_ds):
        ds.preload(s["preload_mb"])
    steps = s["steps_per_epoch"] or default_steps_per_epoch(train_ds.total_frames, crop_frames, s["batch_size"])
    train_ds.num_items = steps * s["batch_size"]

    model = Teacher(train_ds.num_layers, train_ds.dim, **{k: s[k] for k in TCN_DEFAULTS}).to(device)
    hparams = {**model.hparams, "crop_frames": crop_frames, "frame_rate": FRAME_RATE, "classes": list(CLASSES)}
    n_params = model.num_parameters()
    if s["weight_decay"]:
        optimizer = torch.optim.AdamW(model.parameters(), lr=s["lr"], weight_decay=s["weight_decay"])
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=s["lr"])
    scheduler = make_scheduler(optimizer, s["lr_schedule"], s["max_epochs"] * steps)
    ema = make_ema(model, s["ema"])
    pos_weight = None
    if s["pos_weight"]:
        pos_weight = torch.tensor([s["pos_weight"].get(c, 1.0) for c in CLASSES], device=device)[:, None]
    pin = device.type == "cuda"
    train_loader = make_loader(train_ds, s["batch_size"], s["num_workers"], seed, pin)
    dev_loader = make_loader(dev_ds, s["batch_size"], s["num_workers"], seed, pin)
    prov = provenance(stage="teacher", seed=seed, settings=s, device=str(device),
                      train=[list(map(portable_path, p)) for p in train_pairs],
                      dev=[list(map(portable_path, p)) for p in dev_pairs])
    logger.info("teacher: %d train files (%d frames), %d dev files, L=%d D=%d, %d params (TCN %d), "
                "crop %d frames, %d steps x batch %d per epoch, device %s",
                len(train_ds.entries), train_ds.total_frames, len(dev_ds.entries), train_ds.num_layers,
                train_ds.dim, n_params["total"], n_params["tcn"], crop_frames, steps, s["batch_size"], device)

    rows: list[dict] = []
    best_loss, best_epoch, best_state = math.inf, 0, None
    t_start = time.time()
    try:
        for epoch in range(1, s["max_epochs"] + 1):
            t0 = time.time()
            train_ds.set_epoch(epoch)
            model.train()
            total, count = 0.0, 0
            bar = tqdm(train_loader, desc=f"teacher epoch {epoch}", file=sys.stderr, leave=False,
                       dynamic_ncols=True, mininterval=1.0)
            for states, targets in bar:
                mixed = model.fusion.mix(states.to(device, non_blocking=True).float())
                if s["dropout"]:  # whole channels of a crop, before the instance norm (which keeps zeros zero)
                    mixed = F.dropout1d(mixed, s["dropout"], training=True)
                logits, _ = model.forward_mixed(mixed)
                loss_sum, n = masked_bce_sum(logits, targets.to(device, non_blocking=True).transpose(1, 2),
                                             pos_weight)
                loss = loss_sum / n.clamp(min=1)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
                if ema is not None:
                    ema.update_parameters(model)
                total += float(loss_sum.detach())
                count += int(n)
                bar.set_postfix(loss=f"{total / max(count, 1):.4f}")
            bar.close()
            train_loss = total / count if count else float("nan")
            if not math.isfinite(train_loss) and count:
                raise RuntimeError(f"teacher training diverged at epoch {epoch} (train loss {train_loss})")
            scored = model if ema is None else ema.module
            dev_loss = evaluate(scored, dev_loader, device, pos_weight)
            improved = dev_loss < best_loss
            if improved:
                best_loss, best_epoch = dev_loss, epoch
                best_state = {k: v.detach().cpu().clone() for k, v in scored.state_dict().items()}
            rows.append({"epoch": epoch, "train_loss": train_loss, "dev_loss": dev_loss,
                         "lr": optimizer.param_groups[0]["lr"], "seconds": time.time() - t0})
            logger.info("teacher epoch %d/%d: train %.4f dev %.4f%s (best %.4f @ %d) %.1f s", epoch,
                        s["max_epochs"], train_loss, dev_loss, " *" if improved else "", best_loss, best_epoch,
                        rows[-1]["seconds"])
            if epoch - best_epoch >= s["patience"]:
                logger.info("teacher: early stop after epoch %d (no dev improvement for %d epochs)",
                            epoch, s["patience"])
                break
    finally:
        train_ds.close()
        dev_ds.close()

    if best_state is None:
        raise RuntimeError("teacher training produced no finite dev loss: check the dev targets "
                           "(are all of them unknown, -1?)")
    best_model = copy.deepcopy(model).cpu()
    best_model.load_state_dict(best_state)
    _write_curve_tsv(out_dir / "curve.tsv", rows)
    _write_curve_png(out_dir / "curve.png", rows, best_epoch)
    record = {
        "best_epoch": best_epoch,
        "best_dev_loss": best_loss,
        "best_train_loss": next(r["train_loss"] for r in rows if r["epoch"] == best_epoch),
        "epochs_run": len(rows),
        "stopped_early": len(rows) < s["max_epochs"],
        "settings": s,
        "seed": seed,
        "device": str(device),
        "num_params": n_params["total"],
        "num_params_tcn": n_params["tcn"],
        "num_params_fusion": n_params["fusion"],
        "hparams": hparams,
        "crop_frames": crop_frames,
        "steps_per_epoch": steps,
        "train_files": len(train_ds.entries),
        "train_frames": train_ds.total_frames,
        "dev_files": len(dev_ds.entries),
        "dev_crops": len(dev_ds),
        "layer_weights": [float(w) for w in best_model.fusion.weights().detach()],
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
