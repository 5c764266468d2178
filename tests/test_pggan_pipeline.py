"""The original TL-GAN configuration end to end: an official-layout pg-GAN pickle, a trained
CelebA-40 checkpoint, and discover_axes.py / traverse.py / the throughput benchmark as a user
runs them."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tlgan_jax.axes import Axes
from tlgan_jax.extractors import load_extractor
from tlgan_jax.generators import load_generator
from tlgan_jax.train.celeba40 import tiny_checkpoint

from helpers import pggan_fixtures_dir

pytestmark = pytest.mark.slow      # the quick loop: pytest -m "not slow"

ROOT = Path(__file__).resolve().parents[1]


def _run(script, *flags, timeout=600):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, str(ROOT / "experiments" / script), *flags],
                          capture_output=True, text=True, timeout=timeout, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def celeba_ckpt(tmp_path_factory):
    d = tmp_path_factory.mktemp("celeba40")
    tiny_checkpoint(str(d), epochs=1)
    return d


def test_pggan_pickle_and_celeba40_checkpoint_load_through_the_registry(celeba_ckpt):
    gen = load_generator(f"pggan:{pggan_fixtures_dir() / 'tiny32_lod0.pkl'}")
    assert (gen.latent_dim, gen.resolution, gen.latent_prior) == (64, 32, "normal_pixelnorm")
    ext = load_extractor(f"celeba40:{celeba_ckpt}")
    z = np.random.default_rng(0).normal(size=(3, 64)).astype(np.float32)
    scores = ext(gen(z))  # 32² images, resized (anti-aliased) to the extractor's 128² inside
    assert len(scores) == 40 and "Smiling" in scores
    assert all(np.all(np.abs(np.asarray(v)) <= 3.0 + 1e-4) for v in scores.values())


def test_discover_axes_cli_on_pggan_with_celeba40(tmp_path, celeba_ckpt):
    pkl = pggan_fixtures_dir() / "tiny32_lod0.pkl"
    work = tmp_path / "run"
    _run("discover_axes.py", f"--generator=pggan:{pkl}", f"--extractors=celeba40:{celeba_ckpt}",
         f"--workdir={work}", "--num_samples=1024", "--shard_size=512", "--batch_size=128",
         "--eval_faces=16", "--traversal_faces=2", "--noprogress")
    axes = Axes.load(work / "axes.npz")
    assert axes.latent_dim == 64 and len(axes.names) == 40
    assert axes.metadata["generator"] == f"pggan:{pkl}"
    assert axes.metadata["extractors"] == ["celeba40"]
    assert (work / "traversal_Smiling.png").exists()
    summary = json.loads((work / "summary.json").read_text())
    assert set(summary["diagnostics"]) == set(axes.names)

    # traverse.py renders from the axes file; the pickle it names is opened only when the user
    # names it too (an axes file never chooses which files are read)
    out = tmp_path / "grids"
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    refused = subprocess.run([sys.executable, str(ROOT / "experiments" / "traverse.py"),
                              f"--axes={work / 'axes.npz'}", f"--out={out}"],
                             capture_output=True, text=True, timeout=300, env=env)
    assert refused.returncode == 2 and not out.exists()
    assert f"pass --generator NAME yourself (--generator pggan:{pkl}" in refused.stderr
    _run("traverse.py", f"--axes={work / 'axes.npz'}", f"--out={out}", f"--generator=pggan:{pkl}",
         "--attributes=Smiling,Male", "--lock=Young", "--faces=2", "--steps=-2,0,2")
    assert sorted(p.name for p in out.iterdir()) == ["traversal_Male.png", "traversal_Smiling.png"]


def test_axes_of_another_latent_size_are_refused(tmp_path, celeba_ckpt):
    axes = Axes.from_vectors(np.eye(100, 2, dtype=np.float32), ("a", "b"),
                             metadata={"generator": "digiface64", "latent_dim": 100})
    axes.save(tmp_path / "axes.npz")
    pkl = pggan_fixtures_dir() / "tiny32_lod0.pkl"
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, str(ROOT / "experiments" / "traverse.py"),
                           f"--axes={tmp_path / 'axes.npz'}", f"--generator=pggan:{pkl}",
                           f"--out={tmp_path}"], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode != 0
    assert "latent size 100" in proc.stderr and "latent size 64" in proc.stderr


def test_throughput_benchmark_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    _run("benchmark_throughput.py", "--generator=digiface64", "--extractors=gender",
         "--batch=64", "--num=256", f"--json={out}", f"--csv={tmp_path / 'bench.csv'}")
    report = json.loads(out.read_text())
    assert report["samples_per_second"] > 0
    (r,) = report["results"]
    assert r["batch"] == 64 and r["num"] == 256 and r["flops_per_sample"] > 1e6
    assert (tmp_path / "bench.csv").read_text().count("\n") == 2


def test_throughput_benchmark_sweeps_dtypes_and_checks_the_fast_path(tmp_path):
    out = tmp_path / "bench.json"
    pkl = pggan_fixtures_dir() / "tiny32_lod0.pkl"
    proc = _run("benchmark_throughput.py", f"--generator=pggan:{pkl}",
                "--extractors=celeba40-random", "--batch=8,16", "--dtype=float32,bfloat16",
                "--num=32", "--agreement_samples=16", f"--json={out}")
    report = json.loads(out.read_text())
    assert [(r["dtype"], r["batch"]) for r in report["results"]] == [
        ("float32", 8), ("float32", 16), ("bfloat16", 8), ("bfloat16", 16)]
    agree = report["fast_path_agreement"]
    assert agree["num"] == 16 and agree["within_bf16_tolerance"]
    assert "within bf16 tolerance" in proc.stdout
    assert report["machine"]["backend"] == "cpu"

