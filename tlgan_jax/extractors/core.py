"""Attribute extractors F: image -> scores, as a small wrapper around pure functions.

An `Extractor` has
  raw_apply(params, x) -> outputs: the network on its native, already-preprocessed NCHW
      float32 input, giving exactly the original outputs (probabilities, logits, ...);
  preprocess(images) -> x: generator images (NHWC, nominal [-1, 1], any size) to that
      native input: anti-aliased resize, grey where needed, the original normalisation;
  scores(outputs) -> [N, k]: one float32 score per attribute (see each extractor's doc).
`ext(images)` = scores(raw_apply(params, preprocess(images))) as {attribute: [N]}.

A `FaceDescriptor` is the same wrapper for a face-recognition net: `desc(images)` -> [N, D]
embeddings in which two faces are of the same person when their Euclidean distance is below
`threshold` (`descriptor_distance`, `identity_kept`). It scores no attribute; it measures
whether an edit keeps the person.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True, eq=False)
class Extractor:
    name: str
    attributes: tuple[str, ...]
    input_shape: tuple[int, int, int] | None   # native (C, H, W); None: any (custom extractors)
    params: Any
    raw_apply: Callable[[Any, jax.Array], jax.Array]
    preprocess: Callable[[jax.Array], jax.Array]
    scores: Callable[[jax.Array], jax.Array]
    binary: tuple[bool, ...]                   # per attribute: score is a logit (label = score > 0)
    info: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if len(self.binary) != len(self.attributes):
            raise ValueError("binary must have one flag per attribute")

    def score_array(self, params, images: jax.Array) -> jax.Array:
        """Pure: generator images -> [N, k] scores (for use inside a larger jitted function)."""
        return self.scores(self.raw_apply(params, self.preprocess(images)))

    @functools.cached_property
    def _jitted_scores(self):
        return jax.jit(self.score_array)

    @functools.cached_property
    def _jitted_raw(self):
        return jax.jit(self.raw_apply)

    def __call__(self, images) -> dict[str, jax.Array]:
        images = check_images(images, self.name)
        s = self._jitted_scores(self.params, images)
        return {a: s[:, i] for i, a in enumerate(self.attributes)}

    def raw(self, x) -> jax.Array:
        """The network on input already in its native layout (`input_shape`)."""
        shape = getattr(x, "shape", None)
        expected = self.input_shape or ("C", "H", "W")
        if (shape is None or len(shape) != 4
                or (self.input_shape is not None and tuple(shape[1:]) != self.input_shape)):
            raise ValueError(f"{self.name}: raw input must be preprocessed float32 of shape "
                             f"[N, {', '.join(map(str, expected))}], got shape {shape}")
        return self._jitted_raw(self.params, jnp.asarray(x, jnp.float32))


@dataclasses.dataclass(frozen=True, eq=False)
class FaceDescriptor:
    name: str
    dim: int                                   # descriptor length D
    threshold: float                           # same person: distance < threshold
    input_shape: tuple[int, int, int]          # native (C, H, W)
    params: Any
    raw_apply: Callable[[Any, jax.Array], jax.Array]
    preprocess: Callable[[jax.Array], jax.Array]
    info: dict = dataclasses.field(default_factory=dict)

    def descriptor_array(self, params, images: jax.Array) -> jax.Array:
        """Pure: generator images (NHWC, [-1, 1]) -> [N, D] descriptors."""
        return self.raw_apply(params, self.preprocess(images))

    @functools.cached_property
    def _jitted(self):
        return jax.jit(self.descriptor_array)

    @functools.cached_property
    def _jitted_raw(self):
        return jax.jit(self.raw_apply)

    def __call__(self, images) -> jax.Array:
        return self._jitted(self.params, check_images(images, self.name))

    def raw(self, x) -> jax.Array:
        """The network on its native, preprocessed NCHW input."""
        shape = getattr(x, "shape", None)
        if shape is None or len(shape) != 4 or tuple(shape[1:]) != self.input_shape:
            raise ValueError(f"{self.name}: raw input must be preprocessed float32 of shape "
                             f"[N, {', '.join(map(str, self.input_shape))}], got shape {shape}")
        return self._jitted_raw(self.params, jnp.asarray(x, jnp.float32))

    def same_person(self, a, b) -> jax.Array:
        """identity_kept(a, b, self.threshold)."""
        return identity_kept(a, b, self.threshold)

    @property
    def columns(self) -> tuple[str, ...]:
        """Names of the descriptor's D components when labelled like attributes."""
        return tuple(f"{self.name}_d{i:03d}" for i in range(self.dim))

    def as_extractor(self) -> Extractor:
        """The descriptor as an `Extractor` of D continuous 'scores' (`columns`), so sampling
        and edit evaluation compute it in the same jitted labelling call as the attributes."""
        return Extractor(name=self.name, attributes=self.columns, input_shape=self.input_shape,
                         params=self.params, raw_apply=self.raw_apply, preprocess=self.preprocess,
                         scores=lambda d: d, binary=(False,) * self.dim,
                         info=dict(self.info, descriptor=True, threshold=self.threshold))


def descriptor_distance(a, b) -> jax.Array:
    """Euclidean distance between face descriptors, row by row: ||a_i - b_i||_2 (broadcasts)."""
    a, b = jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)
    return jnp.sqrt(jnp.sum(jnp.square(a - b), axis=-1))


def identity_kept(a, b, threshold: float) -> jax.Array:
    """True where descriptors a_i and b_i are of the same person: distance < threshold."""
    return descriptor_distance(a, b) < threshold


def check_images(images, what: str) -> jax.Array:
    shape = getattr(images, "shape", None)
    if shape is None or len(shape) != 4 or shape[-1] not in (1, 3):
        raise ValueError(f"{what}: images must be NHWC [N, H, W, 3] (or 1 channel) float in "
                         f"[-1, 1], got shape {shape}")
    return jnp.asarray(images, jnp.float32)


def resize_antialiased(images: jax.Array, size: int) -> jax.Array:
    """NHWC resize to size×size with an anti-aliasing (triangle) filter when downsampling."""
    n, h, w, c = images.shape
    if (h, w) == (size, size):
        return images
    return jax.image.resize(images, (n, size, size, c), method="linear", antialias=True)


def to_grey(images: jax.Array) -> jax.Array:
    """NHWC RGB -> NHWC grey with ITU-R BT.601 luma (OpenCV's RGB2GRAY):
    .299 R + .587 G + .114 B."""
    w = jnp.asarray([0.299, 0.587, 0.114], images.dtype)
    return jnp.sum(images * w, axis=-1, keepdims=True)


def stack_scores(extractors: Sequence[Extractor], params: Sequence[Any],
                 images: jax.Array) -> jax.Array:
    """Pure: all extractors' scores side by side, [N, sum k]."""
    return jnp.concatenate([e.score_array(p, images) for e, p in zip(extractors, params)], axis=1)


def custom_extractor(fn: Callable[..., Mapping], attributes: Sequence[str], *,
                     name: str = "custom", binary: Sequence[bool] | bool = False,
                     params: Any = None) -> Extractor:
    """A user's extractor: any JAX function images -> {attribute: [N] scores} (or, with
    `params`, fn(params, images)). It plugs into sampling/fitting like a built-in one; its
    `raw` is fn itself on the images. binary: which scores are logits (label = score > 0)."""
    attributes = tuple(attributes)
    if isinstance(binary, bool):
        binary = (binary,) * len(attributes)

    def raw_apply(p, images):
        out = fn(images) if p is None else fn(p, images)
        missing = [a for a in attributes if a not in out]
        if missing:
            raise ValueError(f"extractor {name!r} returned {sorted(out)}, missing {missing}")
        return jnp.stack([jnp.asarray(out[a], jnp.float32).reshape(-1) for a in attributes], 1)

    return Extractor(name=name, attributes=attributes, input_shape=None, params=params,
                     raw_apply=raw_apply, preprocess=lambda x: x, scores=lambda s: s,
                     binary=tuple(bool(b) for b in binary), info={"custom": True})


def as_extractor(obj: Any, resolution: int) -> Extractor:
    """An `Extractor` as is, or a plain function images -> {name: [N]} wrapped by
    `custom_extractor` (attribute names found by tracing it on a [1, R, R, 3] input)."""
    if isinstance(obj, Extractor):
        return obj
    if not callable(obj):
        raise TypeError(f"an extractor must be an Extractor or a function images -> "
                        f"{{name: scores}}, got {type(obj).__name__}")
    spec = jax.ShapeDtypeStruct((1, resolution, resolution, 3), jnp.float32)
    out = jax.eval_shape(obj, spec)
    if not isinstance(out, dict) or not out:
        raise ValueError("a custom extractor must return a non-empty dict {attribute: [N] scores}")
    return custom_extractor(obj, tuple(out), name=getattr(obj, "__name__", "custom"))
