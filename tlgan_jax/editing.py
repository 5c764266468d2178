"""Step 6 of TL-GAN: move latents along attribute axes and render; and judge the edits.

    z' = c(z) + sum_a  t_a * n_a

c is the generator's latent convention (identity for N(0, I) latents; for pg-GAN, which
pixel-normalises its input, the point on the sphere of radius sqrt(d) that the network
actually sees), n_a are unit axes (after `Axes.disentangle(lock)` when attributes are
locked: the moving axes are then orthogonal to the locked ones, so to first order the locked
attributes' linear scores do not change) and t_a the amounts in latent units.

Judging edits. How good are the axes as editing knobs? Re-score edited faces with the extractors.

For fresh latents z (the generator's convention applied), each attribute a with unit
direction n_a and step λ, with Δy = y(z + λ n_a) − y(z − λ n_a):
  success_up[a]   = mean_i [ y_a(z_i + λ n_a) > y_a(z_i) ]
  success_down[a] = mean_i [ y_a(z_i - λ n_a) < y_a(z_i) ]
  E[a, b]         = (mean_i Δy_b / s_b) / (mean_i Δy_a / s_a)
E is the entanglement matrix: the change of attribute b per unit of intended change of a
(E[a, a] = 1), each score measured in units s (1 by default; the axis-quality benchmark uses
standard deviations). With the lock, n_a is first made orthogonal to every other axis
(TL-GAN's lock), which should shrink the off-diagonal entries.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from tlgan_jax.axes import Axes, orthogonal_to_others
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


# ----------------------------------------------------------------------------- judging edits

Label = Callable[[np.ndarray], np.ndarray]


@dataclasses.dataclass(frozen=True)
class EditReport:
    names: tuple[str, ...]            # attributes edited (rows of `entanglement`)
    scored: tuple[str, ...]           # attributes re-scored (columns)
    step: float
    success_up: np.ndarray            # [len(names)]
    success_down: np.ndarray          # [len(names)]
    entanglement: np.ndarray          # [len(names), len(scored)]
    locked: bool

    def as_dict(self) -> dict:
        return {"step": self.step, "locked": self.locked,
                "success_up": dict(zip(self.names, map(float, self.success_up))),
                "success_down": dict(zip(self.names, map(float, self.success_down))),
                "entanglement": {a: dict(zip(self.scored, map(float, row)))
                                 for a, row in zip(self.names, self.entanglement)}}


def scores_after_edits(label: Label, z: np.ndarray, directions: np.ndarray,
                       step: float) -> tuple[np.ndarray, np.ndarray]:
    """(y(z + λ n_j), y(z − λ n_j)), each [k, N, m], for directions [k, d]: every edit of
    every face in one labelling call ([2k·N, d])."""
    z = np.asarray(z, np.float32)
    dirs = np.asarray(directions, np.float32)
    signs = np.array([1.0, -1.0], np.float32)[:, None, None, None]
    moved = z[None, None] + np.float32(step) * signs * dirs[None, :, None, :]   # [2, k, N, d]
    y = np.asarray(label(moved.reshape(-1, z.shape[1]))).reshape(2, dirs.shape[0], z.shape[0], -1)
    return y[0], y[1]


def edit_effects(y0: np.ndarray, y_plus: np.ndarray, y_minus: np.ndarray, cols: Sequence[int],
                 scale: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(success_up [k], success_down [k], E [k, m]) (module doc) from the unedited scores
    y0 [N, m] and the scores after edits y_plus/y_minus [k, N, m]; edit j targets column
    cols[j]; `scale` [m] the units s (default 1)."""
    y0 = np.asarray(y0)
    c = np.asarray(cols, int)
    rows = np.arange(len(c))
    up = np.mean(y_plus[rows, :, c] > y0[:, c].T, axis=1)
    down = np.mean(y_minus[rows, :, c] < y0[:, c].T, axis=1)
    delta = np.mean(np.asarray(y_plus, np.float64) - y_minus, axis=1)          # [k, m]
    if scale is not None:
        delta = delta / np.asarray(scale, np.float64)[None, :]
    own = delta[rows, c][:, None]
    ent = np.divide(delta, own, out=np.full_like(delta, np.nan), where=own != 0)
    return up, down, ent


def edit_report(label: Label, scored: Sequence[str], z: np.ndarray, axes: Axes,
                names: Sequence[str] | None = None, step: float = 3.0,
                lock_others: bool = False, y0: np.ndarray | None = None) -> EditReport:
    """Edit success and entanglement of `axes` (see module doc).

    label: canonical latents [N, d] -> scores [N, len(scored)] (e.g. `Sampler.label`);
    z: canonical latents of the faces to edit.
    """
    names = tuple(names or axes.names)
    scored = tuple(scored)
    z = np.asarray(z, np.float32)
    y0 = label(z) if y0 is None else y0
    dirs = orthogonal_to_others(axes, names) if lock_others else np.asarray(
        edit_directions(axes, names))
    y_plus, y_minus = scores_after_edits(label, z, dirs.T, step)
    up, down, ent = edit_effects(y0, y_plus, y_minus, [scored.index(a) for a in names])
    return EditReport(names, scored, float(step), up, down, ent, bool(lock_others))
