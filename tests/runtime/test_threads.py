"""The busy-cores note (runtime/threads.py): shown when torch's threads outnumber the free cores."""

import os

import pytest

from growlang.runtime import threads
from growlang.runtime.threads import busy_cores_note


@pytest.mark.parametrize("n_threads, cpus, load, fit", [(2, 2, 1.0, 1), (2, 2, 1.9, 1), (8, 8, 4.2, 4),
                                                        (16, 16, 12.0, 4)])
def test_busy_cores_get_a_note_naming_the_thread_count_that_fits(n_threads, cpus, load, fit):
    note = busy_cores_note(n_threads, cpus, load)
    assert note is not None and f"torch uses {n_threads} threads" in note and f"OMP_NUM_THREADS={fit}" in note


@pytest.mark.parametrize("n_threads, cpus, load", [(1, 2, 2.0), (2, 2, 0.3), (8, 8, 0.0), (4, 8, 4.0)])
def test_free_cores_or_one_thread_get_none(n_threads, cpus, load):
    assert busy_cores_note(n_threads, cpus, load) is None


def test_an_unknown_load_average_is_no_note(monkeypatch):
    def unknown():
        raise OSError("no load average here")

    monkeypatch.setattr(os, "getloadavg", unknown)
    assert threads.cpu_threads_note() is None
