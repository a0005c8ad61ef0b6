"""Training shared by the teacher, the proxies and the demo WavLM's pre-training.

:class:`~proxyseg.training.loop.Loop` is the one training loop (epochs with a dev set, patience, EMA and a
best checkpoint; or plain steps); :mod:`~proxyseg.training.resume` lets a killed job continue from its last
finished epoch. This module holds the pieces the teacher and the proxies set up alike: checks, seeded data
loaders, the lr schedule and weight averaging.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, Dataset

from proxyseg.core.errors import InputError
from proxyseg.core.frames import FRAME_RATE
from proxyseg.core.provenance import seed_everything
from proxyseg.core.device import resolve_device
from proxyseg.settings import Runtime
from proxyseg.training.crops import default_steps_per_epoch
from proxyseg.training.loop import Loop, write_curve_png, write_curve_tsv, write_outputs
from proxyseg.training.resume import RESUME_NAME, ResumeFile, fingerprint

__all__ = ["Loop", "RESUME_NAME", "ResumeFile", "begin", "data_record", "epoch_data", "fingerprint", "make_ema",
           "make_loader", "make_scheduler", "write_curve_png", "write_curve_tsv", "write_outputs"]


def _worker_init(worker_id: int):
    seed = torch.initial_seed() % 2 ** 32
    np.random.seed(seed)
    random.seed(seed)


def make_loader(dataset: Dataset, batch_size: int, num_workers: int, seed: int, pin: bool) -> DataLoader:
    """In-order loader (the datasets draw their own seeded crops), seeded so workers are reproducible."""
    generator = torch.Generator()
    generator.manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                      worker_init_fn=_worker_init, generator=generator, pin_memory=pin,
                      persistent_workers=False)


def make_scheduler(optimizer: torch.optim.Optimizer, schedule: str, total_steps: int):
    """None for a constant lr; for ``cosine``, a per-batch decay that reaches 0 at ``total_steps``."""
    if schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, total_steps))
    return None


def make_ema(model: torch.nn.Module, decay: float) -> AveragedModel | None:
    """None for ``decay == 0``; else an exponential moving average of the weights (buffers included),
    updated with ``update_parameters(model)`` after each step. It smooths the step-to-step noise of small
    batches: the averaged model is the one evaluated on dev and saved."""
    if not decay:
        return None
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def begin(who: str, pairs_of: str, train_pairs: Sequence, dev_pairs: Sequence, out_dir, settings, seed: int,
          runtime: Runtime) -> tuple[Path, torch.device, int]:
    """Checks and seeding before a teacher or proxy training: ``(out_dir, device, crop_frames)``.

    ``pairs_of`` names the files of a pair in the errors, e.g. ``(features, targets)``."""
    if not train_pairs:
        raise InputError(None, f"{who} training needs at least one {pairs_of} training pair")
    if not dev_pairs:
        raise InputError(None, f"{who} training needs at least one {pairs_of} dev pair "
                               "(early stopping is on the dev loss)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(runtime.device)
    seed_everything(seed)
    torch.backends.cudnn.benchmark = False
    return out_dir, device, int(round(settings["crop_seconds"] * FRAME_RATE))


def epoch_data(train_ds, dev_ds, settings, runtime: Runtime, crop_frames: int, seed: int,
               device: torch.device) -> tuple[int, DataLoader, DataLoader]:
    """Read what fits into memory, size an epoch (``steps_per_epoch`` batches, by default about one pass
    over the training frames) and make the seeded loaders: ``(steps, train_loader, dev_loader)``."""
    for ds in (train_ds, dev_ds):
        ds.preload(runtime.preload_mb)
    s = settings
    steps = s["steps_per_epoch"] or default_steps_per_epoch(train_ds.total_frames, crop_frames, s["batch_size"])
    train_ds.num_items = steps * s["batch_size"]
    pin = device.type == "cuda"
    return (steps, make_loader(train_ds, s["batch_size"], runtime.num_workers, seed, pin),
            make_loader(dev_ds, s["batch_size"], runtime.num_workers, seed, pin))


def data_record(train_ds, dev_ds) -> dict:
    """The size of the training and dev data, for ``train.json``."""
    return {"train_files": len(train_ds.entries), "train_frames": train_ds.total_frames,
            "dev_files": len(dev_ds.entries), "dev_crops": len(dev_ds)}
