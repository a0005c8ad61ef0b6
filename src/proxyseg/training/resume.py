"""Resuming a killed training job from its last finished epoch.

A job killed by a Slurm time limit (or any kill) would otherwise start over. After each finished epoch the
loop saves its whole state (model, optimizer, scheduler, EMA, best-so-far, curve rows and every random
number generator) to ``out_dir/.resume.pt``: hidden, not an output, written under a temporary name and
renamed, so it is always complete. A rerun whose *fingerprint* (what decides the result) matches continues
from there and ends with the weights an uninterrupted run would have; one that does not match starts over.
The file is deleted once ``model.pt`` is written.
"""

from __future__ import annotations

import json
import logging
import os
import random
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from proxyseg.core.atomic import atomic_open, remove_stale_temporaries
from proxyseg.core.provenance import plain, versions

RESUME_NAME = ".resume.pt"

def _stamp(value):
    """A file as (real path, size, modification time): a cheap stand-in for its content."""
    if isinstance(value, (list, tuple)):
        return [_stamp(v) for v in value]
    st = os.stat(value)
    return [os.path.realpath(value), st.st_size, st.st_mtime_ns]


def fingerprint(stage: str, settings: dict, seed: int, inputs: dict, hparams: dict) -> dict:
    """What decides a training's result: the settings (never the runtime ones: a job may resume on another
    device or with more workers), the seed, the model's
    hparams (less their copy of the settings), the library versions and each input file (``inputs``: name
    -> path or nested lists of paths) with its size and modification time; as JSON-like data. A file
    rewritten since has another time: the training starts over."""
    record = {"stage": stage, "seed": seed,
              "settings": plain(settings),
              "hparams": {k: v for k, v in hparams.items() if k != "settings"},
              "versions": versions(), "inputs": {k: _stamp(v) for k, v in inputs.items()}}
    return json.loads(json.dumps(record, default=str))


def rng_state(generators: Sequence[torch.Generator] = ()) -> dict:
    """Every random number generator a training draws from: torch (CPU, CUDA once in use), NumPy's and
    Python's global ones and the data loaders' own (``generators``)."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
            "numpy": [name, keys.tolist(), pos, has_gauss, gauss], "python": random.getstate(),
            "generators": [g.get_state() for g in generators]}


def set_rng_state(state: dict, generators: Sequence[torch.Generator] = ()) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    random.setstate(state["python"])
    for generator, saved in zip(generators, state["generators"]):
        generator.set_state(saved)


class ResumeFile:
    """``out_dir/.resume.pt`` for the training whose :func:`fingerprint` is ``fingerprint``."""

    def __init__(self, out_dir: str | os.PathLike, fingerprint: dict, log: logging.Logger):
        self.path = Path(out_dir) / RESUME_NAME
        self.fingerprint = fingerprint
        self.log = log

    def load(self) -> dict | None:
        """The saved state if there is one for this very training, else None (a state left aside is logged)."""
        if not self.path.is_file():
            return None
        try:
            saved = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - unreadable (another torch version?): start over
            self.log.warning("%s is unreadable (%s): starting over", self.path, err)
            return None
        old = saved.get("fingerprint") if isinstance(saved, dict) else None
        if old != self.fingerprint:
            old = old or {}
            differ = sorted(k for k in {*old, *self.fingerprint} if old.get(k) != self.fingerprint.get(k))
            self.log.info("%s is from another training (it differs in %s): starting over",
                          self.path, ", ".join(differ))
            return None
        return saved["state"]

    def save(self, state: dict) -> None:
        with atomic_open(self.path, "wb") as handle:
            torch.save({"fingerprint": self.fingerprint, "state": state}, handle)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
        remove_stale_temporaries(self.path)
