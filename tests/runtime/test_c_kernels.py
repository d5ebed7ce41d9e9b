"""runtime/c_kernels.py: which C kernels a process gets and why, how the library is built and
cached, and the self-check that keeps a wrong library out (the kernels themselves:
test_head_kernel.py, test_row_softmax.py)."""

import pytest
import torch

from growlang.runtime import c_kernels as ck


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """c_kernels() chosen anew, building into an empty cache."""
    monkeypatch.setenv("GROWLANG_CACHE", str(tmp_path / "cache"))
    ck.c_kernels.cache_clear()
    yield tmp_path / "cache" / "kernels"
    ck.c_kernels.cache_clear()


def native() -> ck.CKernels:
    k = ck.c_kernels()
    if k.lib is None:
        pytest.skip(f"no C kernels on this machine: {k.why}")
    return k


def test_torch_when_asked(fresh, monkeypatch):
    monkeypatch.setenv(ck.ENV, "torch")
    k = ck.c_kernels()
    assert k.lib is None and k.name == "torch" and ck.ENV in k.describe()
    assert not fresh.exists()  # nothing built


def test_torch_without_avx2(fresh, monkeypatch):
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "DEFAULT")
    k = ck.c_kernels()
    assert k.lib is None and "no AVX2" in k.why and "DEFAULT" in k.why


def test_torch_without_a_compiler(fresh, monkeypatch):
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    monkeypatch.setattr(ck, "compiler", lambda: None)
    k = ck.c_kernels()
    assert k.lib is None and "no C compiler" in k.why and "torch ops" in k.describe()


def test_torch_when_the_build_fails_and_nothing_half_written_remains(fresh, monkeypatch, tmp_path):
    cc = tmp_path / "broken-cc"
    cc.write_text("#!/bin/sh\nfor a; do case $a in --version) echo broken 1.0; exit 0;; esac; done\n"
                  "echo 'broken-cc: cannot compile' >&2; exit 3\n")
    cc.chmod(0o755)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    monkeypatch.setenv("CC", str(cc))
    k = ck.c_kernels()
    assert k.lib is None and "failed" in k.why and "cannot compile" in k.why
    assert not fresh.exists() or list(fresh.iterdir()) == []  # the temporary output was removed


@pytest.mark.parametrize("which", ["head", "row softmax"])
def test_a_kernel_that_disagrees_with_torch_is_not_used(fresh, monkeypatch, which):
    """Every kernel in the library is checked before any is used: a wrong one means torch's ops
    for all, and the line says which disagreed."""
    native()
    ck.c_kernels.cache_clear()
    if which == "head":  # the kernel's results made wrong, as a miscompiled library's would be
        from growlang.runtime import head_kernel as module

        real = module.softmax_cross_entropy
        monkeypatch.setattr(module, "softmax_cross_entropy", lambda z, t, k=None: tuple(x + 1 for x in real(z, t, k)))
    else:
        from growlang.runtime import row_softmax as module

        real = module.softmax_last_dim
        monkeypatch.setattr(module, "softmax_last_dim", lambda x, k=None: real(x, k) * 0.5)
    k = ck.c_kernels()
    assert k.lib is None and "disagreed" in k.why and which in k.why


def test_builds_once_into_the_cache(fresh):
    k = native()
    built = sorted(fresh.iterdir())
    assert len(built) == 1 and built[0].suffix == ".so" and k.name.startswith("C (")
    ck.c_kernels.cache_clear()
    ck.c_kernels()
    assert sorted(fresh.iterdir()) == built  # the second process loads it, builds nothing


def test_a_changed_header_builds_a_new_library(fresh, monkeypatch, tmp_path):
    """The cache key covers runtime/simd.h, which both sources include, not only the sources."""
    native()
    first = sorted(fresh.iterdir())
    header = tmp_path / "simd.h"
    header.write_text(ck.HEADERS[0].read_text() + "\n/* changed */\n")
    monkeypatch.setattr(ck, "HEADERS", (header,))
    ck.c_kernels.cache_clear()
    native()
    assert len(sorted(fresh.iterdir())) == len(first) + 1


def test_unwritable_cache_builds_for_the_process(fresh, monkeypatch, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("GROWLANG_CACHE", str(blocker / "cache"))  # under a file: mkdir fails
    k = native()
    assert not str(k.lib._name).startswith(str(blocker))


def test_rows_are_split_into_fixed_ranges_that_cover_them():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(3)
        n = 3 * ck.ROWS_PER_THREAD + 5
        parts = ck.row_parts(n)
        seen = []
        ck.run_rows(n, parts, lambda p, r0, r1: seen.append((p, r0, r1)))
        assert parts == 3 and sorted(seen) == [(0, 0, n // 3), (1, n // 3, 2 * n // 3), (2, 2 * n // 3, n)]
        assert ck.row_parts(ck.ROWS_PER_THREAD - 1) == 1  # too few rows to split
    finally:
        torch.set_num_threads(before)


def test_concurrent_builds_leave_one_whole_library(fresh):
    """torchrun's ranks start together: each builds to its own temporary file and renames it, so
    every process loads a whole library and the cache ends with one file, no temporaries."""
    import os
    import subprocess
    import sys

    native()  # skips where no kernel is built here
    for f in fresh.iterdir():
        f.unlink()
    code = ("from growlang.runtime.c_kernels import c_kernels; k = c_kernels(); "
            "assert k.lib is not None, k.why; print(k.name)")
    env = {**os.environ, "GROWLANG_CACHE": str(fresh.parent)}
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-2000:]
    assert [f.suffix for f in fresh.iterdir()] == [".so"]
