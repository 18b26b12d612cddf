"""The C reference of the band's firmware passes its host tests (same vectors as Python)."""

import shutil
import subprocess
from pathlib import Path

import pytest

C_DIR = Path(__file__).resolve().parents[1] / "firmware_protocol" / "c"


def test_c_reference_builds_and_passes_its_host_tests():
    if shutil.which("make") is None or shutil.which("cc") is None:
        pytest.skip("no make or C compiler on this machine")
    result = subprocess.run(
        ["make", "-C", str(C_DIR), "test"], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
