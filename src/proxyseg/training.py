"""Pieces shared by the teacher and proxy training loops: seeded data loaders, the lr schedule and weight
averaging."""

from __future__ import annotations

import random

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, Dataset

from proxyseg.errors import InputError

LR_SCHEDULES = ("constant", "cosine")


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


def check_lr_schedule(value, who: str) -> str:
    if value not in LR_SCHEDULES:
        raise InputError(None, f"{who} lr_schedule={value!r}: choose one of {', '.join(LR_SCHEDULES)}")
    return str(value)


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
