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
LATENT_SPACES = ("z", "w", "w+")


@dataclasses.dataclass(frozen=True, eq=False)
class WSpace:
    """A style-based generator split at its intermediate latent w (StyleGAN2):

      mapping(params, z [N, latent_dim]) -> w [N, w_dim]
      synthesis(params, w+ [N, num_ws, w_dim]) -> images, as the Generator's `apply`
      apply(params, z) == synthesis(params, broadcast(mapping(params, z)))

    Both pure and jittable. The generator's truncation (psi, cutoff about the average w)
    belongs to `synthesis`, so w and w+ are the mapping's own outputs and an edited w is
    rendered with the same truncation as the generator's images.
    """
    w_dim: int
    num_ws: int
    mapping: Callable[[Any, jax.Array], jax.Array]
    synthesis: Callable[[Any, jax.Array], jax.Array]
    # style (modulation) weights [w_dim, I], one per style input (SeFa's layers in W)
    style_weights: Callable[[Any], list] | None = None

    def broadcast(self, w) -> jax.Array:
        """w [N, w_dim] -> w+ [N, num_ws, w_dim] (every style input the same w)."""
        return jnp.broadcast_to(w[:, None, :], (w.shape[0], self.num_ws, w.shape[-1]))

    def broadcast_flat(self, w) -> jax.Array:
        """w [N, w_dim] -> w+ flattened row by row, [N, num_ws·w_dim] (the W+ view's input)."""
        return self.broadcast(w).reshape(w.shape[0], self.num_ws * self.w_dim)


@dataclasses.dataclass(frozen=True, eq=False)
class Generator:
    """A generator: `images = gen(z)` with z: [N, latent_dim] -> [N, R, R, 3] float32.

    latent_prior: "normal" (z ~ N(0, I), used as is) or "normal_pixelnorm" (z ~ N(0, I) but
    the network pixel-normalises it first, so only the direction of z matters; pg-GAN).
    w_space: for style-based generators, the mapping z -> w and the synthesis w+ -> images
    (see `WSpace`); None for generators with only z.
    latent_space / base: `gen.in_space("w")` is a view of the same generator taking w (or
    "w+") latents; `gen.encode(z, space)` maps z into a space.
    first_layer, features: the optional hooks of the module doc. For a w / w+ view of a
    style-based generator, `in_space` sets them from the WSpace (SeFa on the style weights,
    GANSpace on w itself); a w+ view has none.
    """
    name: str
    latent_dim: int
    resolution: int
    params: Any
    apply: Callable[[Any, jax.Array], jax.Array]
    latent_prior: str = "normal"
    info: dict = dataclasses.field(default_factory=dict)
    w_space: WSpace | None = None     # style-based generators (StyleGAN2): mapping / synthesis
    latent_space: str = "z"           # what `apply` takes: 'z', or 'w' / 'w+' for a view
    base: Generator | None = None   # a view's z generator (None for a z generator)
    first_layer: Callable[[Any], Any] | None = None
    features: Callable[[Any, jax.Array], jax.Array] | None = None

    def __post_init__(self):
        if self.latent_prior not in LATENT_PRIORS:
            raise ValueError(f"latent_prior must be one of {LATENT_PRIORS}, "
                             f"got {self.latent_prior!r}")
        if self.latent_space not in LATENT_SPACES:
            raise ValueError(f"latent_space must be one of {LATENT_SPACES}, got "
                             f"{self.latent_space!r}")

    # --- latent spaces ------------------------------------------------------------------
    @property
    def z_generator(self) -> Generator:
        """The generator on z (itself unless this is a view on w or w+)."""
        return self.base if self.base is not None else self

    def spaces(self) -> tuple[str, ...]:
        """The latent spaces this generator offers: ('z',) or ('z', 'w', 'w+')."""
        return LATENT_SPACES if self.w_space is not None else ("z",)

    def require_w_space(self) -> WSpace:
        """The z generator's `WSpace`; ValueError for a generator with only z."""
        ws = self.z_generator.w_space
        if ws is None:
            raise ValueError(f"{self.z_generator.name} has no W space (W and W+ belong to "
                             f"style-based generators such as StyleGAN2)")
        return ws

    def check_space(self, space: str) -> str:
        """`space` if this generator has it, else one ValueError naming what it has."""
        if space not in LATENT_SPACES:
            raise ValueError(f"latent space must be one of {LATENT_SPACES}, got {space!r}")
        if space not in self.spaces():
            raise ValueError(f"{self.z_generator.name} has no {space} space, only z (W and W+ "
                             f"belong to style-based generators such as StyleGAN2)")
        return space

    def space_dim(self, space: str) -> int:
        """Size of a latent vector in `space`: latent_dim, w_dim or num_ws·w_dim."""
        self.check_space(space)
        ws, z = self.w_space, self.z_generator
        return {"z": z.latent_dim, "w": ws.w_dim if ws else 0,
                "w+": ws.num_ws * ws.w_dim if ws else 0}[space]

    def in_space(self, space: str) -> Generator:
        """This generator taking latents of `space` (same params, same images):
          z   its input (the z generator);
          w   [N, w_dim]: the mapping's output, used for every style input;
          w+  [N, num_ws·w_dim]: one w per style input, flattened row by row.
        A view's `sample_latents` draws z and maps it; its `canonical_latents` is the
        identity, so fitting, editing, labelling and traversals work on it unchanged. A view
        is made once per z generator and space (the same object on every call, so its jitted
        `apply` compiles once)."""
        self.check_space(space)
        z = self.z_generator
        if space == "z":
            return z
        if space == self.latent_space:
            return self
        if space not in z._views:
            z._views[space] = z._make_view(space)
        return z._views[space]

    @functools.cached_property
    def _views(self) -> dict[str, Generator]:
        return {}

    def _make_view(self, space: str) -> Generator:
        z = self
        ws = z.require_w_space()
        if space == "w":
            def apply(p, w):
                return ws.synthesis(p, ws.broadcast(w))
        else:
            def apply(p, wp):
                return ws.synthesis(p, wp.reshape(wp.shape[0], ws.num_ws, ws.w_dim))
        first_layer = features = None                   # the unsupervised baselines' hooks
        if space == "w":
            style_weights = ws.style_weights
            if style_weights is not None:
                def first_layer(p):
                    return jnp.concatenate([jnp.asarray(m, jnp.float32)
                                            for m in style_weights(p)], axis=1)

            def features(p, w):
                return w
        return dataclasses.replace(z, name=f"{z.name}@{space}", latent_dim=z.space_dim(space),
                                   apply=apply, latent_prior="normal", latent_space=space,
                                   base=z, first_layer=first_layer, features=features)

    @functools.cached_property
    def _jitted_mapping(self):
        return jax.jit(self.require_w_space().mapping)

    def encode(self, z, space: str, batch_size: int = 4096) -> jax.Array:
        """z (the z generator's input latents) -> the same faces' latents in `space`:
        z -> canonical z; w -> mapping(z); w+ -> the broadcast w, flattened [N, num_ws·w_dim]."""
        self.check_space(space)
        zg = self.z_generator
        z = zg.check_latents(z)
        if space == "z":
            return zg.canonical_latents(z)
        ws = zg.require_w_space()
        w = jnp.concatenate([self._jitted_mapping(zg.params, z[i:i + batch_size])
                             for i in range(0, z.shape[0], batch_size)]) \
            if z.shape[0] else jnp.zeros((0, ws.w_dim), jnp.float32)
        if space == "w":
            return w
        return ws.broadcast_flat(w)

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
        """Draw n latents from the generator's prior: z ~ N(0, I_latent_dim), float32 (for a
        w / w+ view: those z, mapped into its space)."""
        if self.latent_space != "z":
            return self.encode(self.z_generator.sample_latents(key, n), self.latent_space)
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
