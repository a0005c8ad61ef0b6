"""Teacher training (METHOD section 3): masked BCE, Adam, early stopping on the dev loss, best checkpoint.

Outputs in ``out_dir``, written only once training has ended (each under a temporary name, then renamed;
``model.pt`` last), so a killed job leaves no checkpoint that looks finished; the epochs are in the log:
``curve.tsv``, ``curve.png``, ``train.json`` and ``model.pt`` ({"state_dict", "hparams", "provenance"}, the
best epoch). The checkpoint's provenance has no time, host or absolute path (identical runs give identical
bytes); ``train.json`` has the full record. A killed job run again resumes after its last finished epoch
(the hidden ``out_dir/.resume.pt``, :mod:`proxyseg.training.resume`) and ends with the same checkpoint.
The loop itself is :class:`proxyseg.training.Loop`, shared with the proxies.
"""

from __future__ import annotations

import logging
import os
from contextlib import closing
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from proxyseg.core.errors import InputError
from proxyseg.settings import Runtime
from proxyseg.settings import Teacher as TeacherSettings
from proxyseg.core.frames import CLASSES, FRAME_RATE
from proxyseg.core.provenance import portable_path, provenance
from proxyseg.teacher.data import DevCrops, Pair, TrainCrops
from proxyseg.teacher.model import Teacher
from proxyseg.training import (Loop, ResumeFile, begin, data_record, epoch_data, fingerprint,
                               make_ema, make_scheduler, write_outputs)

logger = logging.getLogger("proxyseg.teacher")

CURVE_COLUMNS = ("epoch", "train_loss", "dev_loss", "lr", "seconds")


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


def train_teacher(train_pairs: Sequence[Pair], dev_pairs: Sequence[Pair], out_dir: str | os.PathLike,
                  settings: TeacherSettings | dict | None = None, seed: int = 0,
                  runtime: Runtime | dict | None = None) -> dict:
    """Train the teacher on (features.h5, targets.h5) pairs; early stopping on the dev masked BCE.

    Returns the ``train.json`` record. Same seed and data give the same checkpoint on CPU.
    """
    s = TeacherSettings.parse(settings)
    rt = Runtime.parse(runtime)
    out_dir, device, crop_frames = begin("teacher", "(features, targets)", train_pairs, dev_pairs, out_dir, s, seed,
                                         rt)
    # float16 crops (as stored) are collated and copied to the device, then cast to float32 there
    train_ds = TrainCrops(train_pairs, crop_frames, num_items=1, seed=seed, states_dtype=np.float16)
    dev_ds = DevCrops(dev_pairs, crop_frames, states_dtype=np.float16)
    if (dev_ds.num_layers, dev_ds.dim) != (train_ds.num_layers, train_ds.dim):
        raise InputError(dev_ds.pairs[0][0], f"dev features have (L, D) = {(dev_ds.num_layers, dev_ds.dim)} "
                         f"but training features {(train_ds.num_layers, train_ds.dim)}")
    steps, train_loader, dev_loader = epoch_data(train_ds, dev_ds, s, rt, crop_frames, seed, device)

    model = Teacher(train_ds.num_layers, train_ds.dim, **{k: s[k] for k in s.TCN}).to(device)
    hparams = {**model.hparams, "crop_frames": crop_frames, "frame_rate": FRAME_RATE, "classes": list(CLASSES)}
    n_params = model.num_parameters()
    if s["weight_decay"]:
        optimizer = torch.optim.AdamW(model.parameters(), lr=s["lr"], weight_decay=s["weight_decay"])
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=s["lr"])
    loop = Loop("teacher", model, optimizer, make_scheduler(optimizer, s["lr_schedule"], s["max_epochs"] * steps),
                make_ema(model, s["ema"]), loaders=(train_loader, dev_loader), log=logger)
    pos_weight = None
    if s["pos_weight"]:
        pos_weight = torch.tensor([s["pos_weight"].get(c, 1.0) for c in CLASSES], device=device)[:, None]
    prov = provenance(stage="teacher", seed=seed, settings=s, device=str(device),
                      train=[list(map(portable_path, p)) for p in train_pairs],
                      dev=[list(map(portable_path, p)) for p in dev_pairs])
    logger.info("teacher: %d train files (%d frames), %d dev files, L=%d D=%d, %d params (TCN %d), "
                "crop %d frames, %d steps x batch %d per epoch, device %s",
                len(train_ds.entries), train_ds.total_frames, len(dev_ds.entries), train_ds.num_layers,
                train_ds.dim, n_params["total"], n_params["tcn"], crop_frames, steps, s["batch_size"], device)

    def batch_loss(batch):
        states, targets = batch
        mixed = model.fusion.mix(states.to(device, non_blocking=True).float())
        if s["dropout"]:  # whole channels of a crop, before the instance norm (which keeps zeros zero)
            mixed = F.dropout1d(mixed, s["dropout"], training=True)
        logits, _ = model.forward_mixed(mixed)
        loss_sum, n = masked_bce_sum(logits, targets.to(device, non_blocking=True).transpose(1, 2), pos_weight)
        return loss_sum / n.clamp(min=1), loss_sum.detach(), n

    resume = ResumeFile(out_dir, fingerprint("teacher", s, seed, {"train": train_pairs, "dev": dev_pairs}, hparams),
                        logger)
    with closing(train_ds), closing(dev_ds):
        loop.fit(s["max_epochs"], loop.epochs(train_loader, batch_loss),
                 lambda scored: {"loss": evaluate(scored, dev_loader, device, pos_weight)}, s["patience"], resume)
    best_model = loop.best_model("check the dev targets (are all of them unknown, -1?)")
    record = {
        **loop.summary(),
        "settings": s.as_dict(),
        "runtime": rt.as_dict(),
        "seed": seed,
        "device": str(device),
        "num_params": n_params["total"],
        "num_params_tcn": n_params["tcn"],
        "num_params_fusion": n_params["fusion"],
        "hparams": hparams,
        "crop_frames": crop_frames,
        "steps_per_epoch": steps,
        **data_record(train_ds, dev_ds),
        "layer_weights": [float(w) for w in best_model.fusion.weights().detach()],
        "seconds": loop.elapsed,
        "provenance": prov,
    }
    write_outputs(out_dir, loop, record, hparams, prov, CURVE_COLUMNS, "teacher training", "masked BCE")
    return record
