"""Random crops of HDF5 datasets for training, shared by the teacher's and the proxies' data: lazily opened
read-only handles (never inherited through ``fork``, never pickled), optional preloading into memory,
crops drawn as a pure function of ``(seed, epoch, index)`` and the default number of steps per epoch.
Below both stages, so the training loop needs neither.
"""

from __future__ import annotations

import logging
import math
import os

import h5py
import numpy as np

from proxyseg.core.errors import InputError

logger = logging.getLogger("proxyseg.teacher")  # the name its messages have always had

__all__ = ["Handles", "HandleOwner", "RandomCrops", "default_steps_per_epoch", "open_h5"]


def open_h5(path: str) -> h5py.File:
    try:
        return h5py.File(path, "r", locking=False)
    except OSError as err:
        raise InputError(path, f"cannot open HDF5 file ({err})") from err


class Handles:
    """Read-only h5py handles, opened on first use in the current process."""

    def __init__(self):
        self._files: dict[str, h5py.File] = {}
        self._pid = os.getpid()

    def get(self, path: str) -> h5py.File:
        if self._pid != os.getpid():  # inherited through fork: never reuse the parent's handles
            self._files, self._pid = {}, os.getpid()
        handle = self._files.get(path)
        if handle is None:
            handle = self._files[path] = open_h5(path)
        return handle

    def close(self):
        if self._pid == os.getpid():
            for handle in self._files.values():
                try:
                    handle.close()
                except Exception:  # pragma: no cover
                    pass
        self._files = {}


class HandleOwner:
    """Owns lazily opened HDF5 handles (``self._handles``, never pickled into workers) and, after
    :meth:`preload`, in-memory copies of the datasets it reads (``self._memory``: path -> name -> array).

    Subclasses list what they read in :meth:`dataset_names` and read through :meth:`_file`, which slices
    the same way whether the data sit in HDF5 or in memory.
    """

    _memory: dict[str, dict[str, np.ndarray]] | None = None

    def dataset_names(self) -> dict[str, list[str]]:
        """Every dataset this reader uses: HDF5 path -> dataset names."""
        raise NotImplementedError

    def _file(self, path: str):
        if self._memory is not None:
            return self._memory[path]
        if self._handles is None:
            self._handles = Handles()
        return self._handles.get(path)

    def preload(self, max_mb: float) -> bool:
        """Read every dataset this reader uses into memory if together they take at most ``max_mb`` MB as
        stored (``max_mb <= 0``: never); returns whether it did.

        Random crops then come from RAM instead of many small HDF5 reads (on the demo those reads took
        about a tenth of a CPU training epoch; ``benchmarks/crop_loading.py``). The data are loaded once, in this process: DataLoader workers
        forked later share them. Larger sets keep streaming crop by crop from HDF5.
        """
        if max_mb <= 0:
            return False
        wanted = self.dataset_names()
        total = 0
        for path, names in wanted.items():
            with open_h5(path) as handle:
                total += sum(int(handle[name].nbytes) for name in names)
        if total > max_mb * 2 ** 20:
            logger.info("streaming crops from HDF5: the data take %.0f MB, over preload_mb = %g",
                        total / 2 ** 20, max_mb)
            return False
        memory = {}
        for path, names in wanted.items():
            with open_h5(path) as handle:
                memory[path] = {name: handle[name][()] for name in names}
        self._memory = memory
        logger.info("read %.0f MB from %d HDF5 file(s) into memory", total / 2 ** 20, len(wanted))
        return True

    def close(self):
        if self._handles is not None:
            self._handles.close()
        self._handles = None
        self._memory = None

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_handles"] = None
        return state


class RandomCrops:
    """Random crops for training, shared by the teacher's and the proxy's datasets.

    A file is drawn proportionally to its length and a start uniformly; item ``i`` of epoch ``e`` is a
    pure function of ``(seed, e, i)``, so batches do not depend on the number of workers. The class
    using it provides ``entries`` (with ``num_frames``), ``crop_frames``, ``pairs`` and ``read``.
    """

    def init_sampling(self, num_items: int | None, seed: int) -> None:
        lengths = np.array([e.num_frames for e in self.entries], dtype=np.float64)
        if lengths.sum() <= 0:
            raise InputError(self.pairs[0][0], "no frames to train on")
        self.probs = lengths / lengths.sum()
        self.num_items = int(num_items) if num_items is not None else max(
            1, math.ceil(lengths.sum() / self.crop_frames))
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int):
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_items

    def locate(self, index: int) -> tuple[int, int]:
        """(file index, start frame) of item ``index`` in the current epoch."""
        rng = np.random.default_rng([self.seed, self.epoch, int(index)])
        k = int(rng.choice(len(self.entries), p=self.probs))
        start = int(rng.integers(0, max(self.entries[k].num_frames - self.crop_frames, 0) + 1))
        return k, start

    def __getitem__(self, index: int):
        k, start = self.locate(index)
        return self.read(self.entries[k], start)


def default_steps_per_epoch(total_frames: int, crop_frames: int, batch_size: int) -> int:
    return max(1, math.ceil(total_frames / crop_frames / batch_size))
