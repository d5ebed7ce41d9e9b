import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
GOLDEN = HERE / "golden"
# GROWLANG_REGEN_GOLDEN=1 pytest tests/frontend  rewrites the expected files from the current output.
REGEN = os.environ.get("GROWLANG_REGEN_GOLDEN") == "1"


def run_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "growlang", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60)


@pytest.fixture
def cli():
    return run_cli
