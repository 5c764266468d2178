"""The PyTorch StyleGAN2 reference (scripts/peer_stylegan2_torch.py) against the fixtures.

OPTIONAL, NOT RUN IN CI: CI installs no torch (the reference is the throughput benchmark's
same-run peer, not part of the package; the parity that matters is tests/test_stylegan2.py's).
It runs when this interpreter can import torch, or with TLGAN_TORCH_PYTHON=/path/to/python
(a Python with torch and numpy, e.g. a separate venv); otherwise it is skipped, also with CI=true.
"""
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import stylegan2_fixtures_dir

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "peer_stylegan2_torch.py"


def _torch_python() -> str:
    python = os.environ.get("TLGAN_TORCH_PYTHON")
    if python:
        return python
    if importlib.util.find_spec("torch") is not None:
        return sys.executable
    pytest.skip("optional PyTorch reference: no torch here (set TLGAN_TORCH_PYTHON to a Python "
                "with torch; CI does not install it)")


def test_torch_reference_matches_every_fixture_variant():
    out = subprocess.run([_torch_python(), str(SCRIPT),
                          f"--check_fixtures={stylegan2_fixtures_dir()}"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    errors = {m[0]: float(m[1]) for m in
              re.findall(r"^(\w+ images_\w+): max\|ours-expected\|/max\|expected\| = (\S+)$",
                         out.stdout, re.M)}
    assert len(errors) == 6, out.stdout      # 2 fixtures × (psi 1, 0.7, 0.7 with cutoff 4)
    assert max(errors.values()) <= 1e-5 and "PASS" in out.stdout
