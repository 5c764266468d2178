"""The README as a new user meets it: its main command and its Python API block, taken from
README.md itself (so they cannot drift), run with a small sample count.

The only changes made to what the README says: the API block's `num=16384` becomes
`num=NUM` and the main command gets `--num_samples=NUM` plus smaller evaluation settings;
both run in a temporary directory (their relative paths `runs/...` land there)."""
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tlgan_jax.axes import Axes

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
NUM = 384


def _block(heading: str, lang: str) -> str:
    """The first ```lang block after the line `heading`."""
    section = README.split(f"\n{heading}\n", 1)[1]
    return re.search(rf"```{lang}\n(.*?)```", section, re.S).group(1)


def main_command() -> list[str]:
    """The README's main command: the last step of the first line under 'Two commands'."""
    line = _block("## Two commands", "bash").strip().splitlines()[0]
    return shlex.split(line.split("&&")[-1])


def api_block() -> str:
    code = _block("## Python API", "python")
    assert code.count("num=16384") == 1, "the README's API block changed: update this test"
    return code.replace("num=16384", f"num={NUM}")


def test_the_readme_main_command_and_api_block_run_and_agree(tmp_path, monkeypatch, capsys):
    cmd = main_command()
    assert cmd[:2] == ["python", "experiments/discover_axes.py"], cmd
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, str(ROOT / cmd[1]), *cmd[2:],
                           f"--num_samples={NUM}", "--eval_faces=16", "--traversal_faces=2"],
                          cwd=tmp_path, capture_output=True, text=True, env=env, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    relative = cmd[2].split("=", 1)[1]
    workdir = tmp_path / relative
    for name in ("axes.npz", "summary.md", "summary.json", "traversal_male.png"):
        assert (workdir / name).is_file(), name
    for name in ("axes.npz", "summary.md", "summary.json"):      # it says where it wrote
        assert f"{relative}/{name}" in proc.stdout, name
    assert "| male | AUC" in (workdir / "summary.md").read_text()

    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(api_block(), "README.md (Python API)", "exec"), namespace)
    assert namespace["images"].shape == (4, 64, 64, 3)
    assert namespace["samples"].z.shape == (NUM, 100)
    # The same seed, targets and split as the main job: the same axes (up to float rounding).
    ours = namespace["axes"]
    cli_axes = Axes.load(workdir / "axes.npz").select(["male", "age"]).disentangle(lock=["age"])
    for name in ("male", "age"):
        cos = float(np.dot(np.asarray(ours[name]), np.asarray(cli_axes[name])))
        assert cos > 0.9999, (name, cos)
    cli_auc = Axes.load(workdir / "axes.npz").diagnostics["male"]["auc"]
    assert ours.diagnostics["male"]["auc"] == pytest.approx(cli_auc, abs=1e-3)
