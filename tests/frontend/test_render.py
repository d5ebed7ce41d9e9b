"""Numbers as `check` prints them: absurd sizes stay readable (issue 12 item 26)."""

import pytest

from growlang.render import gib, si


@pytest.mark.parametrize("n,text", [(999, "999"), (1500, "1.5k"), (2.5e9, "2.5B"), (4e12, "4T"),
                                    (1.2e18, "1.20e18"), (3e21, "3.00e21")])
def test_si_counts(n, text):
    assert si(n) == text


@pytest.mark.parametrize("n,text", [(5 * 2**20, "5 MiB"), (3 * 2**30, "3.0 GiB"), (2**45, "32.0 TiB"),
                                    (3 * 2**50, "3.0 PiB"), (17948566393 * 2**30, "1.93e19 bytes")])
def test_memory(n, text):
    assert gib(n) == text
