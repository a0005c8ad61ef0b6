"""The training loop shared by the teacher, the proxies and the demo WavLM: units, patience, EMA, resume."""

from __future__ import annotations

import logging
import os
import random

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from proxyseg import settings as S
from proxyseg.training import Loop, ResumeFile, fingerprint, make_ema, make_loader, make_scheduler
from proxyseg.training.resume import RESUME_NAME, rng_state, set_rng_state


class Noisy(Dataset):
    """y = 2 x + noise, with fresh x each epoch (a pure function of the epoch, like the crop datasets)."""

    def __init__(self, n=32):
        self.n, self.epoch = n, 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(1000 * self.epoch + i)
        x = torch.randn(4, generator=g)
        return x, 2 * x.sum(dim=0, keepdim=True) + 0.1 * torch.randn(1, generator=g)


class Stop(Exception):
    pass


def _fit(out_dir, die_after=None, lr=0.05):
    """Train a small net with dropout (global torch RNG), Adam, a cosine schedule and an EMA for 8 epochs
    (patience 3); with ``die_after``, raise after that epoch was saved."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Dropout(0.3), torch.nn.Linear(16, 1))
    train, dev = make_loader(Noisy(), 8, 0, 0, False), make_loader(Noisy(8), 8, 0, 0, False)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    log = logging.getLogger("proxyseg.test")
    loop = Loop("toy", model, optimizer, make_scheduler(optimizer, "cosine", 8 * 4), make_ema(model, 0.5),
                loaders=(train, dev), log=log)

    def batch_loss(batch):
        x, y = batch
        loss = (model(x) - y).square().mean()
        return loss, float(loss.detach()) * len(x), len(x)

    def evaluate(scored):
        scored.eval()
        with torch.no_grad():
            return {"loss": float(sum((scored(x) - y).square().sum() for x, y in dev)) / 8}

    epoch = loop.epochs(train, batch_loss)

    def unit(n):
        if n == die_after:
            raise Stop
        return epoch(n)

    settings = {"lr": lr}
    resume = ResumeFile(out_dir, fingerprint("toy", settings, 0, {}, {}), log)
    return loop.fit(8, unit, evaluate, patience=3, resume=resume)


def test_killed_and_resumed_loop_ends_where_an_uninterrupted_one_does(tmp_path, caplog):
    whole = _fit(tmp_path / "whole")
    assert (tmp_path / "whole" / RESUME_NAME).is_file()  # write_outputs removes it, fit alone does not
    with pytest.raises(Stop):
        _fit(tmp_path / "killed", die_after=4)
    torch.manual_seed(123), np.random.seed(123), random.seed(123)  # a new process: other global RNG states
    with caplog.at_level(logging.INFO, logger="proxyseg.test"):
        resumed = _fit(tmp_path / "killed")
    assert "resuming after epoch 3" in caplog.text
    assert [r["epoch"] for r in resumed.rows] == [r["epoch"] for r in whole.rows]
    for key in ("train_loss", "dev_loss", "lr"):
        assert [r[key] for r in resumed.rows] == [r[key] for r in whole.rows], key
    assert (resumed.best_epoch, resumed.best_loss, resumed.steps) == (whole.best_epoch, whole.best_loss, whole.steps)
    for k, v in whole.best_state.items():
        assert torch.equal(resumed.best_state[k], v), k
    for k, v in whole.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[k], v), k


def test_a_resume_state_of_other_settings_is_not_used(tmp_path, caplog):
    with pytest.raises(Stop):
        _fit(tmp_path, die_after=3)
    with caplog.at_level(logging.INFO, logger="proxyseg.test"):
        loop = _fit(tmp_path, lr=0.01)
    assert "differs in settings" in caplog.text and "resuming" not in caplog.text
    assert len(loop.rows) >= 3 and loop.rows[0]["lr"] < 0.01


def test_fingerprint_sees_settings_seed_and_changed_inputs(tmp_path):
    """Runtime settings never reach it (they are not training settings: proxyseg.settings.Runtime)."""
    data = tmp_path / "a.h5"
    data.write_bytes(b"1234")
    base = fingerprint("teacher", {"lr": 1.0}, 3, {"train": [(data, data)]}, {"hidden": 8, "settings": {"x": 1}})
    same = fingerprint("teacher", S.Teacher.parse({"lr": 1.0}).as_dict(), 3, {"train": [(data, data)]},
                       {"hidden": 8, "settings": {"x": 2}})  # the model's copy of the settings is not counted
    assert same == fingerprint("teacher", S.Teacher.parse({"lr": 1.0}), 3, {"train": [(data, data)]}, {"hidden": 8})
    assert base == fingerprint("teacher", {"lr": 1.0}, 3, {"train": [(data, data)]}, {"hidden": 8})
    assert fingerprint("teacher", {"lr": 2.0}, 3, {"train": [(data, data)]}, {"hidden": 8}) != base
    assert fingerprint("teacher", {"lr": 1.0}, 4, {"train": [(data, data)]}, {"hidden": 8}) != base
    os.utime(data, ns=(1, 1))  # same size, other time: taken for other content
    assert fingerprint("teacher", {"lr": 1.0}, 3, {"train": [(data, data)]}, {"hidden": 8}) != base


def test_rng_state_round_trip():
    generator = torch.Generator().manual_seed(5)
    state = rng_state([generator])

    def draw():
        return (torch.rand(3).tolist(), np.random.rand(3).tolist(), random.random(),
                torch.rand(2, generator=generator).tolist())

    first = draw()
    set_rng_state(state, [generator])
    assert draw() == first


def test_steps_mode_clips_and_keeps_a_row_per_step():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loop = Loop("steps", model, optimizer, clip_norm=1e-3, unit="step")
    before = model.weight.detach().clone()

    def step(n):
        loss = 1e3 * model(torch.ones(1, 3)).sum()
        loop.optimise(loss)
        return {"loss": float(loss.detach())}

    loop.fit(4, step, report=lambda row, improved: None)
    assert [r["step"] for r in loop.rows] == [1, 2, 3, 4] and loop.steps == 4
    assert set(loop.rows[0]) == {"step", "loss", "lr", "seconds"}
    # each step moves the weights by at most lr x clip_norm
    assert float((model.weight.detach() - before).norm()) <= 4 * 0.1 * 1e-3 + 1e-7
