"""The same numbers on an AVX-512 and an AVX2 machine (proxyseg.core.numerics): MKL pinned to its AVX2
branch. An AVX2-only machine is emulated with ``MKL_ENABLE_INSTRUCTIONS=AVX2`` (MKL's own ceiling)."""

import os
import subprocess
import sys

import pytest

from proxyseg.core.numerics import PINS, cpu_flags, pin_kernels

# a product, a convolution and its weight gradient, as in every training step: their bits, hashed
PROBE = """
import hashlib, proxyseg, torch
g = torch.Generator().manual_seed(0)
a, b = torch.randn(64, 300, 257, generator=g), torch.randn(257, 128, generator=g)
x = torch.randn(32, 256, 200, generator=g, requires_grad=True)
w = torch.randn(128, 256, 3, generator=g, requires_grad=True)
y = torch.nn.functional.conv1d(x, w, padding=1)
y.square().sum().backward()
print(hashlib.sha1((a @ b).numpy().tobytes() + y.detach().numpy().tobytes() + w.grad.numpy().tobytes()).hexdigest())
"""


def _probe(**env) -> str:
    base = {k: v for k, v in os.environ.items() if k not in PINS and not k.startswith("MKL_")}
    out = subprocess.run([sys.executable, "-c", PROBE], env={**base, "OMP_NUM_THREADS": "1", **env},
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_pins_only_where_the_cpu_has_avx2_and_the_user_set_nothing():
    env = {}
    assert pin_kernels(env, {"avx2", "fma", "sse2"}) == PINS and env == PINS
    env = {"MKL_CBWR": "COMPATIBLE"}
    assert pin_kernels(env, {"avx2", "fma"})["MKL_CBWR"] == "COMPATIBLE"  # the user's choice stands
    env = {}
    assert pin_kernels(env, {"sse2", "avx"}) == {} and env == {}  # no AVX2: MKL's AVX2 branch would not run
    env = {"PROXYSEG_PIN_KERNELS": "0"}
    assert pin_kernels(env, {"avx2", "fma"}) == {}


@pytest.mark.skipif(not {"avx2", "fma"} <= cpu_flags(), reason="needs an x86-64 CPU with AVX2 (Linux)")
def test_an_avx2_machine_computes_the_same_bits():
    assert _probe() == _probe(MKL_ENABLE_INSTRUCTIONS="AVX2")


@pytest.mark.skipif(not {"avx512f"} <= cpu_flags(), reason="the difference shows on an AVX-512 CPU only")
def test_without_the_pin_the_bits_differ():
    # the test above can fail: MKL's own AVX-512 path sums in another order
    assert _probe(PROXYSEG_PIN_KERNELS="0") != _probe(PROXYSEG_PIN_KERNELS="0", MKL_ENABLE_INSTRUCTIONS="AVX2")
