"""What produced an artifact: versions, seed and settings, stored beside it (JSON or HDF5 attributes)."""

from __future__ import annotations

import json
import platform
import random
from datetime import datetime, timezone
from importlib import metadata

import numpy as np

_PACKAGES = ("proxyseg", "torch", "torchaudio", "transformers", "h5py", "numpy", "pandas",
             "pyannote.core", "pyannote.metrics", "scikit-learn", "soundfile")


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def provenance(**settings) -> dict:
    """A record to store beside an artifact: settings given by the caller plus library versions."""
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "versions": versions(),
        "settings": settings,
    }


def provenance_json(**settings) -> str:
    return json.dumps(provenance(**settings), indent=2, sort_keys=True, default=str)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) so a rerun gives the same numbers."""
    random.seed(seed)
    np.random.seed(seed)
    try:
        import torch
    except ImportError:  # pragma: no cover
        return
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
