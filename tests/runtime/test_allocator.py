"""runtime/allocator.py: glibc's thresholds raised where glibc is, nothing done elsewhere."""

import platform
import types

import pytest

from growlang.runtime import allocator


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_glibc_takes_both_thresholds():
    assert allocator.keep_freed_memory() is True


def test_other_libc_is_left_alone(monkeypatch):
    monkeypatch.setattr(allocator.platform, "libc_ver", lambda: ("musl", "1.2"))
    monkeypatch.setattr(allocator.ctypes, "CDLL", lambda *a: pytest.fail("must not load a libc it does not know"))
    assert allocator.keep_freed_memory() is False


def test_mallopt_refusal_is_reported(monkeypatch):
    def mallopt(param, value):
        return 0  # glibc answers 0 when it rejects a value

    monkeypatch.setattr(allocator.platform, "system", lambda: "Linux")
    monkeypatch.setattr(allocator.platform, "libc_ver", lambda: ("glibc", "2.36"))
    monkeypatch.setattr(allocator.ctypes, "CDLL", lambda *a: types.SimpleNamespace(mallopt=mallopt))
    assert allocator.keep_freed_memory() is False
