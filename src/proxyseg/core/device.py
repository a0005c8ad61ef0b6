"""Where a step runs: the one resolver of the ``runtime.device`` setting (``auto``, ``cpu``, ``cuda``,
``cuda:N``), shared by every stage that runs a model or the NMF, so ``auto`` means the same everywhere."""

from __future__ import annotations

import torch

__all__ = ["resolve_device", "device_of"]


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` (or None) -> ``cuda`` when available, else ``cpu``; anything else is passed to torch."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def device_of(device, *tensors) -> torch.device:
    """``device`` resolved as :func:`resolve_device` does, but None means where the data already is: the
    device of the first tensor among ``tensors`` (CPU when none is a tensor, e.g. NumPy arrays)."""
    if device is not None:
        return resolve_device(device)
    for t in tensors:
        if isinstance(t, torch.Tensor):
            return t.device
    return torch.device("cpu")
