"""The allocator tuning every command applies at start-up (proxyseg.core.allocator)."""

import ctypes.util
import platform

import pytest

from proxyseg.core.allocator import tune_malloc


def test_default_keeps_glibcs_settings():
    assert tune_malloc({"PROXYSEG_MALLOC": "default"}) is False


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                    reason="mallopt is glibc's")
def test_glibc_accepts_every_setting():
    # mallopt returns 0 for a value glibc refuses (M_MMAP_THRESHOLD above 32 MB is one): a silent no-op
    assert ctypes.util.find_library("c")
    assert tune_malloc({}) is True
