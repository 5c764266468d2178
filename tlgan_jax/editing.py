"""Step 6 of TL-GAN: move latents along attribute axes and render.

    z' = c(z) + sum_a  t_a * n_a

c is the generator's latent convention (identity for N(0, I) latents; for pg-GAN, which
pixel-normalises its input, the point on the sphere of radius sqrt(d) that the network
actually sees), n_a are unit axes (after `Axes.disentangle(lock)` when attributes are
locked: the moving axes are then orthogonal to the locked ones, so to first order the locked
attributes' linear scores do not change) and t_a the amounts in latent units.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from tlgan_jax.axes import Axes
from tlgan_jax.generators import Generator


def edit_directions(axes: Axes, names: Sequence[str], lock: Sequence[str] = ()) -> jax.Array:
    """[d, len(names)] unit directions for `names`, made orthogonal to the `lock`ed axes
    (TL-GAN's lock semantics, see `Axes.disentangle`; axes neither moved nor locked play no
    part)."""
    if lock:
        axes = axes.disentangle(lock=list(lock), target=list(names))
    return jnp.stack([jnp.asarray(axes[n], jnp.float32) for n in names], axis=1)


def edit_latents(gen: Generator, z, axes: Axes, amounts: Mapping[str, float],
                 lock: Sequence[str] = ()) -> jax.Array:
    """z' = c(z) + sum_a t_a n_a for amounts {attribute: t_a}; z: [N, d]."""
    axes.check_latent_dim(gen.latent_dim, gen.name)
    z = gen.check_latents(z)
    names = list(amounts)
    unknown = [n for n in names if n not in axes.names]
    if unknown:
        raise ValueError(f"unknown attribute(s) {unknown}; the axes have {list(axes.names)}")
    t = np.array([amounts[n] for n in names], np.float32)
    if not np.all(np.isfinite(t)):
        raise ValueError(f"edit amounts must be finite, got {dict(amounts)}")
    if lock and set(lock) & set(names):
        raise ValueError(f"cannot both move and lock {sorted(set(lock) & set(names))}")
    dirs = edit_directions(axes, names, lock)
    return gen.canonical_latents(z) + jnp.asarray(t) @ dirs.T


def traversal_latents(gen: Generator, z, direction, steps: Sequence[float]) -> jax.Array:
    """[F, S, d]: each of F faces moved by each step t along the unit `direction` [d]."""
    z = gen.canonical_latents(gen.check_latents(z))
    d = jnp.asarray(direction, jnp.float32)
    return z[:, None, :] + jnp.asarray(steps, jnp.float32)[None, :, None] * d[None, None, :]


def render_traversal(gen: Generator, z, direction, steps: Sequence[float],
                     batch_size: int = 64) -> np.ndarray:
    """Images [F, S, R, R, 3] of `traversal_latents` (rendered in batches)."""
    zz = traversal_latents(gen, z, direction, steps)
    f, s, d = zz.shape
    flat = zz.reshape(f * s, d)
    imgs = np.concatenate([np.asarray(gen(flat[i:i + batch_size]))
                           for i in range(0, f * s, batch_size)])
    return imgs.reshape(f, s, *imgs.shape[1:])
