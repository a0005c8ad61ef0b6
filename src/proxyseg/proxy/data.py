"""Proxy training data: crops of (teacher dump, spectrogram cache) pairs (METHOD §5).

One pair is ``(dump.h5, spectrogram.h5)`` of one corpus split:

* the teacher dump (``docs/outputs.md``): one group per URI with ``logits`` float32 ``(T, 4)`` and
  ``features`` float16 ``(T, D)`` (the teacher's fused features S);
* the spectrogram cache: one float16 dataset ``(T, F)`` per URI, ``X = log(1 + |STFT|^2)`` on the same
  frame grid.

An item is ``(input (C, t), teacher_logits (4, t), X (F, t))`` (channel-major, float32 by default):
``input`` is S (``C = D``) for ``input="wavlm"`` or X itself (``C = F``) for ``input="spectrogram"``.

A URI present in only one file of a pair is an ``InputError`` naming both files; a dump and a spectrogram
that differ in length are cut to the shorter one (one warning per pair when some differ by more than one
frame).

As in :mod:`proxyseg.teacher.data` (both through :mod:`proxyseg.training.crops`), only the crop is read
from HDF5, handles are opened lazily in the reading process and never pickled, and crop randomness is a
pure function of ``(seed, epoch, index)``.

Padding: a crop that runs past the end of a file (only for files shorter than a crop) is zero-padded in
the input and in X, and its teacher logits are padded with 0 (p = 0.5, "no information"); the
distillation loss has no mask, so those frames count like the others. Inference pads short files with
zeros the same way (:func:`proxyseg.teacher.dump.sliding_window_average`), so the proxy sees padding in
training as it will at test time. Dev crops follow the inference windows (last crop aligned to the end
of the file), so only files shorter than a crop are padded there.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Iterable, Sequence

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from proxyseg.core.errors import InputError
from proxyseg.core.frames import CLASSES
from proxyseg.core.hdf5 import h5_datasets
from proxyseg.training.crops import HandleOwner, RandomCrops, Handles, open_h5
from proxyseg.teacher.dump import window_starts
from proxyseg.teacher.dumpfile import dump_groups

logger = logging.getLogger("proxyseg.proxy")

Pair = tuple[str | os.PathLike, str | os.PathLike]

#: What the proxy's Psi reads: the teacher's fused features S, or the log-power spectrogram X.
from proxyseg.settings import INPUTS  # noqa: E402

__all__ = ["INPUTS", "Pair", "ProxyEntry", "spectrogram_datasets", "scan_proxy_pairs",
           "ProxyTrainCrops", "ProxyDevCrops"]


@dataclass(frozen=True)
class ProxyEntry:
    dump: str
    spectrogram: str
    uri: str
    num_frames: int  # min of the dump's and the spectrogram's lengths


def spectrogram_datasets(handle: h5py.File) -> dict[str, h5py.Dataset]:
    """The ``(T, F)`` datasets of a spectrogram cache, one per URI."""
    return h5_datasets(handle)


def scan_proxy_pairs(pairs: Iterable[Pair], inp: str = "wavlm") -> tuple[list[ProxyEntry], int, int]:
    """Check every (dump.h5, spectrogram.h5) pair and list its files -> (entries, D, F).

    ``D`` is the teacher feature size (0 when ``inp="spectrogram"`` and no dump has features), ``F`` the
    number of frequency bins.
    """
    if inp not in INPUTS:
        raise ValueError(f"proxy input {inp!r}: choose one of {INPUTS}")
    entries: list[ProxyEntry] = []
    dim = n_freq = None
    dim_from = freq_from = ""
    pairs = [(str(d), str(s)) for d, s in pairs]
    for dump_path, spec_path in pairs:
        with open_h5(dump_path) as dh, open_h5(spec_path) as sh:
            groups, specs = dump_groups(dh), spectrogram_datasets(sh)
            only_d = sorted(set(groups) - set(specs))
            only_s = sorted(set(specs) - set(groups))
            if only_d or only_s:
                parts = []
                if only_d:
                    parts.append(f"{len(only_d)} URI(s) only in the teacher dump {dump_path} "
                                 f"({', '.join(only_d[:5])})")
                if only_s:
                    parts.append(f"{len(only_s)} URI(s) only in the spectrograms {spec_path} "
                                 f"({', '.join(only_s[:5])})")
                raise InputError(dump_path, f"teacher dump and spectrograms {spec_path} disagree: "
                                 + "; ".join(parts) + ". Rebuild both from the same file list.")
            mismatched = []
            for uri in sorted(groups):
                g, x = groups[uri], specs[uri]
                logits = g["logits"]
                if logits.ndim != 2 or logits.shape[1] != len(CLASSES):
                    raise InputError(dump_path, f"{uri}/logits has shape {logits.shape}, "
                                     f"expected (T, {len(CLASSES)})")
                n = int(logits.shape[0])
                if inp == "wavlm" or "features" in g:
                    if "features" not in g:
                        raise InputError(dump_path, f"group {uri!r} has no 'features' dataset (the teacher's "
                                         "fused features S, needed for input 'wavlm')")
                    f = g["features"]
                    if f.ndim != 2 or f.shape[0] != n:
                        raise InputError(dump_path, f"{uri}/features has shape {f.shape}, expected ({n}, D)")
                    if dim is None:
                        dim, dim_from = int(f.shape[1]), f"{dump_path}:{uri}"
                    elif int(f.shape[1]) != dim:
                        raise InputError(dump_path, f"{uri}/features has D = {f.shape[1]}, but {dim_from} has "
                                         f"{dim}: all dumps must come from one teacher")
                if x.ndim != 2:
                    raise InputError(spec_path, f"dataset {uri!r} has shape {x.shape}, expected (T, F)")
                if n_freq is None:
                    n_freq, freq_from = int(x.shape[1]), f"{spec_path}:{uri}"
                elif int(x.shape[1]) != n_freq:
                    raise InputError(spec_path, f"dataset {uri!r} has F = {x.shape[1]}, but {freq_from} has "
                                     f"{n_freq}: all spectrograms must use one STFT setting")
                if abs(n - int(x.shape[0])) > 1:
                    mismatched.append(f"{uri} ({n} vs {x.shape[0]})")
                entries.append(ProxyEntry(dump_path, spec_path, uri, int(min(n, x.shape[0]))))
            if mismatched:
                logger.warning("%s vs %s: %d file(s) differ in length by more than one frame, using the "
                               "shorter: %s", dump_path, spec_path, len(mismatched),
                               ", ".join(mismatched[:5]) + (" ..." if len(mismatched) > 5 else ""))
    if n_freq is None:
        raise InputError(None, "no files found in the teacher dumps " + ", ".join(p[0] for p in pairs))
    return entries, int(dim or 0), n_freq


class _ProxyCropReader(HandleOwner, Dataset):
    def __init__(self, pairs: Sequence[Pair], crop_frames: int, inp: str = "wavlm", dtype=np.float32):
        if crop_frames < 2:
            raise ValueError(f"crop_frames must be >= 2, got {crop_frames}")
        self.pairs = [(str(d), str(s)) for d, s in pairs]
        self.crop_frames = int(crop_frames)
        self.input = inp
        self.dtype = np.dtype(dtype)
        self.entries, self.dim, self.n_freq = scan_proxy_pairs(self.pairs, inp)
        self._handles: Handles | None = None

    @property
    def in_channels(self) -> int:
        return self.dim if self.input == "wavlm" else self.n_freq

    @property
    def total_frames(self) -> int:
        return sum(e.num_frames for e in self.entries)

    def dataset_names(self) -> dict[str, list[str]]:
        names: dict[str, list[str]] = {}
        for e in self.entries:
            names.setdefault(e.dump, []).append(f"{e.uri}/logits")
            if self.input == "wavlm":
                names[e.dump].append(f"{e.uri}/features")
            names.setdefault(e.spectrogram, []).append(e.uri)
        return names

    def read(self, entry: ProxyEntry, start: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Frames ``[start, start + crop)`` of one file -> ``(input (C, crop), teacher_logits (4, crop),
        X (F, crop))``; past the end of the file: zeros (logits 0)."""
        crop = self.crop_frames
        stop = min(start + crop, entry.num_frames)
        n = max(stop - start, 0)
        logits = np.zeros((len(CLASSES), crop), dtype=np.float32)
        x = np.zeros((self.n_freq, crop), dtype=self.dtype)
        if n:
            dump = self._file(entry.dump)
            logits[:, :n] = dump[f"{entry.uri}/logits"][start:stop].T
            x[:, :n] = self._file(entry.spectrogram)[entry.uri][start:stop].T
        x_t = torch.from_numpy(x)
        if self.input == "spectrogram":
            return x_t, torch.from_numpy(logits), x_t
        s = np.zeros((self.dim, crop), dtype=self.dtype)
        if n:
            s[:, :n] = dump[f"{entry.uri}/features"][start:stop].T
        return torch.from_numpy(s), torch.from_numpy(logits), x_t


class ProxyTrainCrops(RandomCrops, _ProxyCropReader):
    """``num_items`` random crops per epoch: a file drawn proportionally to its length, a uniform start.

    Item ``i`` of epoch ``e`` is a pure function of ``(seed, e, i)``; call ``set_epoch`` before each epoch.
    """

    def __init__(self, pairs: Sequence[Pair], crop_frames: int, inp: str = "wavlm",
                 num_items: int | None = None, seed: int = 0, dtype=np.float32,
                 gain_db: Sequence[float] | None = None):
        super().__init__(pairs, crop_frames, inp, dtype)
        self.init_sampling(num_items, seed)
        if gain_db is not None and inp != "spectrogram":
            raise ValueError("gain_db applies to spectrogram input only")
        self.gain_db = tuple(gain_db) if gain_db is not None else None

    def __getitem__(self, index: int):
        inp, logits, x = super().__getitem__(index)
        if self.gain_db is None:
            return inp, logits, x
        g = np.random.default_rng([self.seed, self.epoch, int(index), 1]).uniform(*self.gain_db)
        x = with_gain(x, g)
        return x, logits, x


def with_gain(x: torch.Tensor, gain_db: float) -> torch.Tensor:
    """``X = log(1 + |S|^2)`` of the audio played ``gain_db`` louder: ``log(1 + g^2 (e^X - 1))``."""
    return torch.log1p(torch.expm1(x.double()) * 10.0 ** (gain_db / 10.0)).to(x.dtype)


class ProxyDevCrops(_ProxyCropReader):
    """Deterministic crops covering every frame of every file: consecutive crops, the last one aligned to
    the end of the file (so only files shorter than a crop are padded)."""

    def __init__(self, pairs: Sequence[Pair], crop_frames: int, inp: str = "wavlm", dtype=np.float32):
        super().__init__(pairs, crop_frames, inp, dtype)
        self.items = [(k, start) for k, e in enumerate(self.entries)
                      for start in window_starts(e.num_frames, self.crop_frames, self.crop_frames)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        k, start = self.items[index]
        return self.read(self.entries[k], start)
