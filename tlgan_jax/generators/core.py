"""Generators G: latent z -> image, as a small immutable wrapper around a pure function.

A `Generator` holds `params` (a pytree) and `apply(params, z) -> images` (pure, jittable,
NHWC float32 in nominal [-1, 1], unclipped). Calling it validates the latents and runs the
jitted function; `apply` and `params` stay available for `jax.jit`/`vmap`/sharding.

Hooks for the unsupervised baselines (tlgan_jax.fit.unsupervised), optional, set by the
generator's builder (a new generator family adds them in its own module):
  first_layer(params) -> W [latent_dim, m]     the first layer is linear in the latent,
        h = z·W (+ bias), before any nonlinearity (SeFa: eigenvectors of Ŵ Ŵᵀ, Ŵ = W with
        unit columns; any per-column scale folded into W does not matter);
  features(params, z) -> [N, m]                an intermediate activation, flattened, for the
        latents z [N, latent_dim] as `apply` takes them (GANSpace: PCA of it, regressed back
        to z). Pure and jittable.
Without them `fit_axes(method="sefa"/"ganspace", generator=gen)` raises and asks for
weight= / features= / directions= instead.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

LATENT_PRIORS = ("normal", "normal_pixelnorm")


@dataclasses.dataclass(frozen=True, eq=False)
class Generator:
    """A generator: `images = gen(z)` with z: [N, latent_dim] -> [N, R, R, 3] float32.

    latent_prior: "normal" (z ~ N(0, I), used as is) or "normal_pixelnorm" (z ~ N(0, I) but
    the network pixel-normalises it first, so only the direction of z matters; pg-GAN).
    first_layer, features: the optional hooks of the module doc.
    """
    name: str
    latent_dim: int
    resolution: int
    params: Any
    apply: Callable[[Any, jax.Array], jax.Array]
    latent_prior: str = "normal"
    info: dict = dataclasses.field(default_factory=dict)
    first_layer: Callable[[Any], Any] | None = None
    features: Callable[[Any, jax.Array], jax.Array] | None = None

    def __post_init__(self):
        if self.latent_prior not in LATENT_PRIORS:
            raise ValueError(f"latent_prior must be one of {LATENT_PRIORS}, got "
                             f"{self.latent_prior!r}")

    @functools.cached_property
    def _jitted(self):
        return jax.jit(self.apply)

    def check_latents(self, z) -> jax.Array:
        """Return z as float32 [N, latent_dim]; raise ValueError naming the problem."""
        shape = getattr(z, "shape", None)
        if shape is None or len(shape) != 2:
            raise ValueError(f"{self.name}: latents must have shape [N, {self.latent_dim}], got "
                             f"shape {shape}")
        if shape[1] != self.latent_dim:
            raise ValueError(f"{self.name}: wrong latent size {shape[1]}: this generator takes "
                             f"latents of size {self.latent_dim} (shape [N, {self.latent_dim}])")
        z = jnp.asarray(z, jnp.float32)
        if not isinstance(z, jax.core.Tracer) and not bool(jnp.all(jnp.isfinite(z))):
            raise ValueError(f"{self.name}: latents contain NaN or infinite values")
        return z

    def __call__(self, z) -> jax.Array:
        return self._jitted(self.params, self.check_latents(z))

    def sample_latents(self, key: jax.Array, n: int) -> jax.Array:
        """Draw n latents from the generator's prior: z ~ N(0, I_latent_dim), float32."""
        return jax.random.normal(key, (n, self.latent_dim), jnp.float32)

    def canonical_latents(self, z: jax.typing.ArrayLike) -> jax.Array:
        """The latents as the network sees them, for fitting and editing.

        normal: z itself. normal_pixelnorm: z / rms(z) * 1, i.e. on the sphere of radius
        sqrt(latent_dim) (the generator's output does not depend on the scale of z).
        """
        x = jnp.asarray(z)
        if self.latent_prior == "normal":
            return x
        return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + 1e-8)


def to_uint8(images):
    """[-1, 1] float images -> uint8 with NVIDIA's rounding: rint((x + 1) * 127.5), clipped.

    JAX arrays (also inside `jax.jit`) stay JAX arrays; anything else becomes numpy."""
    xp = jnp if isinstance(images, jax.Array) else np
    x = xp.rint((xp.asarray(images, xp.float32) + 1.0) * 127.5)
    return xp.clip(x, 0, 255).astype(xp.uint8)
