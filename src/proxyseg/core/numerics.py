"""The same numbers on any x86-64 machine: pin the math libraries' code paths before they load.

Intel MKL (torch's BLAS on x86) and OpenBLAS (numpy's) pick their kernels from the CPU they run on, and
kernels for different instruction sets sum in different orders. Measured here (an AVX-512 Xeon): three
epochs of the demo teacher give other weights when MKL is limited to AVX2 (``MKL_ENABLE_INSTRUCTIONS=AVX2``,
what an AVX2-only or AMD machine runs) than with its AVX-512 path; with ``MKL_CBWR=AVX2`` (MKL's
conditional numerical reproducibility) both give the same weights, and as fast. ATen's own kernels
(``ATEN_CPU_CAPABILITY``) and oneDNN's (``ONEDNN_MAX_CPU_ISA``) did not change them. So on a CPU with
AVX2 and FMA, MKL is pinned to its AVX2 branch and OpenBLAS to its Haswell kernels, unless the variables
are set already. What remains machine-dependent: the thread count (torch's reductions split by thread),
which the workflow sets per rule (docs/usage.md), and GPUs. ``PROXYSEG_PIN_KERNELS=0`` turns this off.

Runs in ``proxyseg/__init__.py``, before numpy or torch is imported by proxyseg.
"""

from __future__ import annotations

import os

#: What is set (with ``setdefault``) on a CPU that has AVX2 and FMA.
PINS = {"MKL_CBWR": "AVX2", "OPENBLAS_CORETYPE": "Haswell"}


def cpu_flags(path: str = "/proc/cpuinfo") -> set[str]:
    """The first processor's flags (Linux); empty where there is no such file."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def pin_kernels(environ=os.environ, flags: set[str] | None = None) -> dict[str, str]:
    """Set :data:`PINS` where unset; returns the values in force for those keys (for provenance)."""
    if environ.get("PROXYSEG_PIN_KERNELS", "1").strip() not in ("0", "false", "no", "off"):
        flags = cpu_flags() if flags is None else flags
        if {"avx2", "fma"} <= flags:
            for key, value in PINS.items():
                environ.setdefault(key, value)
    return {key: environ[key] for key in PINS if key in environ}
