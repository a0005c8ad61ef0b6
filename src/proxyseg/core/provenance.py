"""What produced an artifact: versions, seed and settings, stored beside it (JSON or HDF5 attributes)."""

from __future__ import annotations

import hashlib
import json
import os
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


#: Keys of :func:`provenance` that differ between identical runs: kept out of artifacts whose bytes should
#: only depend on the data, settings and seed (checkpoints), and stored in the JSON record beside them.
MACHINE_KEYS = ("created", "host")


def plain(value):
    """``value`` with settings objects (:mod:`proxyseg.core.settings`) as plain dicts, at any depth."""
    if hasattr(value, "as_dict"):
        return value.as_dict()
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain(v) for v in value)
    return value


def provenance(**settings) -> dict:
    """A record to store beside an artifact: settings given by the caller plus library versions."""
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "versions": versions(),
        "kernels": {key: os.environ[key] for key in ("MKL_CBWR", "OPENBLAS_CORETYPE") if key in os.environ},
        "settings": plain(settings),
    }


def without_machine(record: dict) -> dict:
    """``record`` less the creation time and host, for inside an artifact (identical runs, identical bytes)."""
    return {k: v for k, v in record.items() if k not in MACHINE_KEYS}


def portable_path(path):
    """``path`` relative to the working directory if it lies under it, else as given (falsy: unchanged).

    Workflow stages run from the project folder and get paths like ``results/...``, so relative to it a path
    reads the same in every checkout and on every machine; relative to the results folder would need every
    caller to know that folder. A path outside (a shared corpus, a hub cache) has no better name: kept.
    """
    if not path:
        return path
    text = os.fspath(path)
    for target, cwd in ((os.path.abspath(text), os.getcwd()), (os.path.realpath(text), os.path.realpath("."))):
        rel = os.path.relpath(target, cwd)
        if rel != os.pardir and not rel.startswith(os.pardir + os.sep):
            return rel
    return text


def file_sha256(path) -> str:
    """sha256 of a file's bytes (hex), read in 1 MiB blocks: what fetched files are recorded by."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
