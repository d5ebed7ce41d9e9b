"""scripts/fuzz_frontend.py in tiny mode: every kind of input, in-process and through the CLI."""

import subprocess
import sys
from pathlib import Path

from conftest import ROOT


def test_fuzz_script_smoke(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "scripts/fuzz_frontend.py", "--count", "200", "--seed", "7",
                        "--cli-sample", "4", "--save-dir", str(tmp_path / "failures")],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "200 inputs" in r.stdout and "no failures" in r.stdout and "Traceback" not in r.stderr
    assert not (tmp_path / "failures").exists()
