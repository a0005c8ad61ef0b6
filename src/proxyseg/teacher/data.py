"""Teacher training data: crops of cached WavLM states (features HDF5) with frame targets (targets HDF5).

Only the crop is read from HDF5. File handles are opened lazily in the process that reads (so a
DataLoader worker never inherits a handle across ``fork``) and are never pickled.

Crop randomness is a pure function of ``(seed, epoch, index)``, so the batches do not depend on the
number of workers.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from proxyseg.core.errors import InputError
from proxyseg.core.frames import CLASSES, UNKNOWN
from proxyseg.core.hdf5 import h5_datasets
from proxyseg.training.crops import Handles, HandleOwner, RandomCrops, open_h5

logger = logging.getLogger("proxyseg.teacher")

Pair = tuple[str | os.PathLike, str | os.PathLike]


@dataclass(frozen=True)
class FileEntry:
    features: str
    targets: str
    uri: str
    num_frames: int  # min of the features' and targets' lengths


def scan_pairs(pairs: Iterable[Pair]) -> tuple[list[FileEntry], int, int]:
    """Check every (features.h5, targets.h5) pair and list its files -> (entries, num_layers, dim).

    A URI present in only one file of a pair is an ``InputError`` naming both files. A features dataset
    and its targets that differ in length are cut to the shorter one, with one warning per pair when
    some differ by more than one frame.
    """
    entries: list[FileEntry] = []
    shape: tuple[int, int] | None = None
    shape_from = ""
    for feats_path, targets_path in pairs:
        feats_path, targets_path = str(feats_path), str(targets_path)
        with open_h5(feats_path) as fh, open_h5(targets_path) as th:
            feats, targets = h5_datasets(fh), h5_datasets(th)
            only_f = sorted(set(feats) - set(targets))
            only_t = sorted(set(targets) - set(feats))
            if only_f or only_t:
                parts = []
                if only_f:
                    parts.append(f"{len(only_f)} URI(s) only in the features ({', '.join(only_f[:5])})")
                if only_t:
                    parts.append(f"{len(only_t)} URI(s) only in the targets {targets_path} "
                                 f"({', '.join(only_t[:5])})")
                raise InputError(feats_path, f"features and targets {targets_path} disagree: "
                                 + "; ".join(parts) + ". Rebuild both from the same file list.")
            mismatched = []
            for uri in sorted(feats):
                f, t = feats[uri], targets[uri]
                if f.ndim != 3:
                    raise InputError(feats_path, f"dataset {uri!r} has shape {f.shape}, expected (T, L, D)")
                if t.ndim != 2 or t.shape[1] != len(CLASSES):
                    raise InputError(targets_path,
                                     f"dataset {uri!r} has shape {t.shape}, expected (T, {len(CLASSES)})")
                if shape is None:
                    shape, shape_from = (int(f.shape[1]), int(f.shape[2])), f"{feats_path}:{uri}"
                elif (f.shape[1], f.shape[2]) != shape:
                    raise InputError(feats_path, f"dataset {uri!r} has (L, D) = {tuple(f.shape[1:])}, but "
                                     f"{shape_from} has {shape}: all features must come from one model")
                if abs(int(f.shape[0]) - int(t.shape[0])) > 1:
                    mismatched.append(f"{uri} ({f.shape[0]} vs {t.shape[0]})")
                entries.append(FileEntry(feats_path, targets_path, uri, int(min(f.shape[0], t.shape[0]))))
            if mismatched:
                logger.warning("%s vs %s: %d file(s) differ in length by more than one frame, using the "
                               "shorter: %s", feats_path, targets_path, len(mismatched),
                               ", ".join(mismatched[:5]) + (" ..." if len(mismatched) > 5 else ""))
    if shape is None:
        raise InputError(None, "no features found in " + ", ".join(str(p[0]) for p in pairs))
    return entries, shape[0], shape[1]


class _CropReader(HandleOwner, Dataset):
    def __init__(self, pairs: Sequence[Pair], crop_frames: int, states_dtype=np.float32):
        if crop_frames < 2:
            raise ValueError(f"crop_frames must be >= 2, got {crop_frames}")
        self.pairs = [(str(f), str(t)) for f, t in pairs]
        self.crop_frames = int(crop_frames)
        self.states_dtype = np.dtype(states_dtype)
        self.entries, self.num_layers, self.dim = scan_pairs(self.pairs)
        self._handles: Handles | None = None

    @property
    def total_frames(self) -> int:
        return sum(e.num_frames for e in self.entries)

    def dataset_names(self) -> dict[str, list[str]]:
        names: dict[str, list[str]] = {}
        for e in self.entries:
            names.setdefault(e.features, []).append(e.uri)
            names.setdefault(e.targets, []).append(e.uri)
        return names

    def read(self, entry: FileEntry, start: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Frames ``[start, start + crop)`` of one file -> (states (crop, L, D), targets (crop, 4) float32);
        past the end of the file: zero states, targets -1.

        States are float32 unless the dataset was built with ``states_dtype=np.float16`` (the HDF5 dtype:
        half the memory in collation and host-to-device copies; the caller casts to float32)."""
        crop = self.crop_frames
        stop = min(start + crop, entry.num_frames)
        n = max(stop - start, 0)
        states = np.zeros((crop, self.num_layers, self.dim), dtype=self.states_dtype)
        targets = np.full((crop, len(CLASSES)), UNKNOWN, dtype=np.float32)
        if n:
            states[:n] = self._file(entry.features)[entry.uri][start:stop]
            targets[:n] = self._file(entry.targets)[entry.uri][start:stop]
        return torch.from_numpy(states), torch.from_numpy(targets)


class TrainCrops(RandomCrops, _CropReader):
    """``num_items`` random crops per epoch: a file drawn proportionally to its length, a uniform start.

    Item ``i`` of epoch ``e`` is a pure function of ``(seed, e, i)``; call ``set_epoch`` before each epoch
    (with non-persistent workers the new value reaches the workers).
    """

    def __init__(self, pairs: Sequence[Pair], crop_frames: int, num_items: int | None = None,
                 seed: int = 0, states_dtype=np.float32):
        super().__init__(pairs, crop_frames, states_dtype)
        self.init_sampling(num_items, seed)


class DevCrops(_CropReader):
    """Deterministic non-overlapping crops covering every file (the last crop of a file is padded)."""

    def __init__(self, pairs: Sequence[Pair], crop_frames: int, states_dtype=np.float32):
        super().__init__(pairs, crop_frames, states_dtype)
        self.items = [(k, start) for k, e in enumerate(self.entries)
                      for start in range(0, e.num_frames, self.crop_frames)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        k, start = self.items[index]
        return self.read(self.entries[k], start)
