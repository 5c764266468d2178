"""Generators G: latent z -> image, by name: `load_generator(name)`.

  digiface64          DCGAN 64×64 faces (DigiFace-1M), z ~ N(0, I_100)      [embedded default]
  pggan:PATH.pkl      NVIDIA's pg-GAN from an official pickle (uses Gs)
  pggan1024           the CelebA-HQ 1024² pg-GAN architecture with random weights (benchmarks)
  stylegan2:PATH.pkl  NVIDIA's StyleGAN2 from an official pickle (uses Gs); psi 1, stored noise;
                      options truncation_psi=0.7, truncation_cutoff=None (first N style layers)
  stylegan2-1024      the config-f 1024² StyleGAN2 architecture with random weights (benchmarks)

A `Generator` (see `core`) holds params (a pytree) and a pure `apply(params, z)`; style-based
ones also a `WSpace` (mapping z -> w, synthesis w+ -> images). Converted
parameters of the pinned weights are cached with orbax (`weights.pinned.cached_params`).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from tlgan_jax import runtime
from tlgan_jax.generators import dcgan, pggan, stylegan2
from tlgan_jax.generators.core import LATENT_PRIORS, Generator, WSpace, to_uint8
from tlgan_jax.weights import pinned
from tlgan_jax.weights.pggan_pickle import PgganPickleError, load_pggan_pickle
from tlgan_jax.weights.safe_pickle import require_regular_file
from tlgan_jax.weights.stylegan2_pickle import check_stylegan2_file, load_stylegan2_pickle

__all__ = ["BUILTIN_GENERATORS", "EMBEDDED_GENERATOR", "LATENT_PRIORS", "PGGAN_PICKLE_HELP",
           "STYLEGAN2_OPTIONS", "Generator", "WSpace", "check_name", "is_stylegan2",
           "load_generator", "to_uint8"]

EMBEDDED_GENERATOR = "digiface64"
# loaded by name alone, reading no file
BUILTIN_GENERATORS = ("digiface64", "pggan1024", "stylegan2-1024")
STYLEGAN2_OPTIONS = ("truncation_psi", "truncation_cutoff")     # load_generator(**options)


def _digiface64() -> Generator:
    path = pinned.asset_path("gan-face-generate", "gan_face_generate/weights.tar")
    params = pinned.cached_params("digiface64", "gan-face-generate", lambda: dcgan.load(path))
    return dcgan.as_generator(params, name="digiface64", info={
        "source": "gan-face-generate==1.1.1 weights.tar (DCGAN, DigiFace-1M)"})


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


def is_stylegan2(name: str) -> bool:
    """Whether generator `name` is a StyleGAN2 (takes `STYLEGAN2_OPTIONS`, has a W space)."""
    return name.startswith("stylegan2:") or name == "stylegan2-1024"


def check_name(name: str, **options) -> None:
    """Raise ValueError for an unknown generator name or an option it does not take, and the
    pickle reader's own error (ValueError / OSError, naming the file) for a pickle path that
    is not a regular file; loads nothing (flags are checked with it before any work)."""
    if not isinstance(name, str):
        raise ValueError(f"a generator name is a string, got {type(name).__name__}")
    allowed = STYLEGAN2_OPTIONS if is_stylegan2(name) else ()
    bad = sorted(set(options) - set(allowed))
    if bad:
        raise ValueError(f"generator {name!r} takes no option(s) {bad}"
                         + (f"; it takes {list(allowed)}" if allowed else
                            " (truncation options are for StyleGAN2 generators)"))
    if name in BUILTIN_GENERATORS:
        return
    if name.startswith("pggan:"):
        if not name[len("pggan:"):]:
            raise ValueError(f"'pggan:' needs the pickle's path after the colon; "
                             f"{PGGAN_PICKLE_HELP}")
        try:            # the reader's own check (a device or FIFO would never end)
            require_regular_file(name[len("pggan:"):], PgganPickleError, "pg-GAN pickle")
        except PgganPickleError as e:
            raise PgganPickleError(f"{e}. {PGGAN_PICKLE_HELP}") from None
        return
    if name.startswith("stylegan2:"):
        if not name[len("stylegan2:"):]:
            raise ValueError("'stylegan2:' needs the pickle's path after the colon, e.g. "
                             "stylegan2:/path/to/stylegan2-ffhq-config-f.pkl")
        check_stylegan2_file(name[len("stylegan2:"):])
        return
    raise ValueError(f"unknown generator {name!r}: use 'digiface64', 'pggan:PATH.pkl', "
                     f"'pggan1024', 'stylegan2:PATH.pkl' or 'stylegan2-1024'")


def _pggan_pickle(path: str, fast: bool) -> Generator:
    params, config = pggan.from_network(load_pggan_pickle(path))
    return pggan.as_generator(params, config, name=f"pggan:{path}", **_pggan_kwargs(fast))


def _pggan1024(fast: bool, seed: int = 0) -> Generator:
    params = pggan.random_params(jax.random.key(seed), pggan.CELEBAHQ_1024)
    return pggan.as_generator(params, pggan.CELEBAHQ_1024, name="pggan1024",
                              **_pggan_kwargs(fast))


def _stylegan2_kwargs(fast: bool, truncation_psi=1.0, truncation_cutoff=None) -> dict:
    # float32: modulation on the activations and Conv0_up as the phase-split transposed conv
    # + FIR (exact rewrites, parity ≤ 1e-5 on the fixtures); fast adds bf16 compute (GPU)
    return {"dtype": jnp.bfloat16 if fast else jnp.float32, "modulation": "activations",
            "upsample": "transposed", "truncation_psi": truncation_psi,
            "truncation_cutoff": truncation_cutoff}


def _stylegan2_pickle(path: str, fast: bool, **options) -> Generator:
    params, config = stylegan2.from_network(load_stylegan2_pickle(path))
    return stylegan2.as_generator(params, config, name=f"stylegan2:{path}",
                                  **_stylegan2_kwargs(fast, **options))


def _stylegan2_1024(fast: bool, seed: int = 0, **options) -> Generator:
    params = stylegan2.random_params(jax.random.key(seed), stylegan2.CONFIG_F_1024)
    return stylegan2.as_generator(params, stylegan2.CONFIG_F_1024, name="stylegan2-1024",
                                  **_stylegan2_kwargs(fast, **options))


def load_generator(name: str = EMBEDDED_GENERATOR, *, fast: bool = False,
                   **options) -> Generator:
    """A `Generator` by name (see the module docstring). fast: bf16 fast path where offered.

    options (StyleGAN2 only): truncation_psi (default 1: no truncation), truncation_cutoff
    (default None: every style layer; N: the first N)."""
    check_name(name, **options)
    runtime.ensure_configured()      # JAX set-up before its first use (tlgan_jax.runtime)
    if name == "digiface64":
        return _digiface64()
    if name.startswith("pggan:"):
        return _pggan_pickle(name[len("pggan:"):], fast)
    if name == "pggan1024":
        return _pggan1024(fast)
    if name.startswith("stylegan2:"):
        return _stylegan2_pickle(name[len("stylegan2:"):], fast, **options)
    if name == "stylegan2-1024":
        return _stylegan2_1024(fast, **options)
    raise AssertionError(f"check_name let {name!r} through")   # unreachable
