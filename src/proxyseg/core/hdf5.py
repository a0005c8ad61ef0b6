"""HDF5 helpers without heavy imports (no torch), for light jobs such as gathering feature shards."""

from __future__ import annotations

import h5py


def h5_datasets(handle: h5py.File) -> dict[str, h5py.Dataset]:
    """All datasets of an HDF5 file by full name (without the leading ``/``): one per URI."""
    out: dict[str, h5py.Dataset] = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            out[name] = obj

    handle.visititems(visit)
    return out
