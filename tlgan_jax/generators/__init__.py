"""Generators G: latent z -> image, by name: `load_generator(name)`.

  digiface64          DCGAN 64×64 faces (DigiFace-1M), z ~ N(0, I_100)      [embedded default]
  pggan:PATH.pkl      NVIDIA's pg-GAN from an official pickle (uses Gs)
  pggan1024           the CelebA-HQ 1024² pg-GAN architecture with random weights (benchmarks)

A `Generator` (see `core`) holds params (a pytree) and a pure `apply(params, z)`. Converted
parameters of the pinned weights are cached with orbax (`weights.pinned.cached_params`).
"""
from __future__ import annotations

import os
from pathlib import Path

import jax
import jax.numpy as jnp

from tlgan_jax.generators import dcgan, pggan
from tlgan_jax.generators.core import LATENT_PRIORS, Generator, to_uint8
from tlgan_jax.weights import pinned
from tlgan_jax.weights.pggan_pickle import load_pggan_pickle

__all__ = ["EMBEDDED_GENERATOR", "LATENT_PRIORS", "PGGAN_PICKLE_HELP", "Generator", "check_name",
           "load_generator", "to_uint8"]

EMBEDDED_GENERATOR = "digiface64"


def _digiface64() -> Generator:
    path = pinned.asset_path("gan-face-generate", "gan_face_generate/weights.tar")
    params = pinned.cached_params(f"digiface64-{pinned.CONVERSION_VERSION}", lambda: dcgan.load(path))
    return Generator(name="digiface64", latent_dim=dcgan.LATENT_DIM, resolution=64,
                     params=params, apply=dcgan.apply, latent_prior="normal",
                     info={"source": "gan-face-generate==1.1.1 weights.tar (DCGAN, DigiFace-1M)"})


def _pggan_kwargs(fast: bool) -> dict:
    # Both run Conv0 as the exact 4-phase sub-pixel rewrite of upsample + 3×3 conv (parity with
    # the faithful form ~2e-6 on the fixtures); fast adds bf16 compute (GPU).
    return {"dtype": jnp.bfloat16 if fast else jnp.float32, "conv0": "subpixel"}


# Where NVIDIA's official pg-GAN pickle comes from (README: "Using your own GAN / pg-GAN pickle").
PGGAN_PICKLE_HELP = (
    "NVIDIA's official CelebA-HQ generator is karras2018iclr-celebahq-1024x1024.pkl from the "
    "progressive_growing_of_gans release (github.com/tkarras/progressive_growing_of_gans, "
    "Google Drive folder networks/tensorflow-version; CC BY-NC 4.0): download it and pass "
    "pggan:/path/to/karras2018iclr-celebahq-1024x1024.pkl")


def check_name(name: str) -> None:
    """Raise ValueError for an unknown generator name and FileNotFoundError for a pickle that
    is not a readable file; loads nothing (flags are checked with it before any work)."""
    if not isinstance(name, str):
        raise ValueError(f"a generator name is a string, got {type(name).__name__}")
    if name in ("digiface64", "pggan1024"):
        return
    if name.startswith("pggan:"):
        path = Path(name[len("pggan:"):]).expanduser()
        if not name[len("pggan:"):]:
            raise ValueError(f"'pggan:' needs the pickle's path after the colon; "
                             f"{PGGAN_PICKLE_HELP}")
        if not path.is_file() or not os.access(path, os.R_OK):
            why = "no such file" if not path.exists() else "not a readable file"
            raise FileNotFoundError(f"pg-GAN pickle {path}: {why}. {PGGAN_PICKLE_HELP}")
        return
    raise ValueError(f"unknown generator {name!r}: use 'digiface64', 'pggan:PATH.pkl' or "
                     f"'pggan1024'")


def _pggan_pickle(path: str, fast: bool) -> Generator:
    params, config = pggan.from_network(load_pggan_pickle(path))
    return pggan.as_generator(params, config, name=f"pggan:{path}", **_pggan_kwargs(fast))


def _pggan1024(fast: bool, seed: int = 0) -> Generator:
    params = pggan.random_params(jax.random.key(seed), pggan.CELEBAHQ_1024)
    return pggan.as_generator(params, pggan.CELEBAHQ_1024, name="pggan1024",
                              **_pggan_kwargs(fast))


def load_generator(name: str = EMBEDDED_GENERATOR, *, fast: bool = False) -> Generator:
    """A `Generator` by name (see the module docstring). fast: bf16 fast path where offered."""
    check_name(name)
    if name == "digiface64":
        return _digiface64()
    if name.startswith("pggan:"):
        return _pggan_pickle(name[len("pggan:"):], fast)
    return _pggan1024(fast)
