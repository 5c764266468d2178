"""Ordinary least squares with intercept (TL-GAN's axes), closed form, chunked over samples.

For rows selected by a 0/1 mask m (n = Σ m) and every attribute column a at once:
    min_{w_a, b_a} Σ_i m_i (y_ia − z_i·w_a − b_a)²
    μ = mean_m z, ν = mean_m y, S = Σ m (z−μ)(z−μ)ᵀ / n  [d, d], c = Σ m (z−μ)(y−ν)ᵀ / n  [d, k]
    w = S⁻¹ c (one Cholesky of S, one solve for all k columns), b = ν − μ·w.
Numerics (float32): the data are shifted by a fixed centre z₀, y₀ (the mean over all rows)
before the products are accumulated chunk by chunk, and the exact shifted-data correction is
applied at the end, S = Σ m (z−z₀)(z−z₀)ᵀ/n − s sᵀ with s = Σ m (z−z₀)/n, so no large
uncentred sums cancel; the products use `precision=HIGHEST`; the solve gets one step of
iterative refinement. Memory: the rows of each fit are gathered one [chunk, d] block at a
time, so there is no copy of z and each row costs one d×d outer product per fit it is in.
Targets are used as given (TL-GAN regressed arctanh(clip(y)) — transform y before calling).
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

HIGHEST = jax.lax.Precision.HIGHEST
SINGULAR_TOL = 1e-6   # a latent column with < 1e-6 of its variance unexplained by the others


class ShiftedMoments(NamedTuple):
    """Sums over masked rows in the frame shifted by (shift_z, shift_y); additive over masks."""
    n: jax.Array          # [F]
    sum_z: jax.Array      # [F, d]    Σ m (z − z₀)
    sum_y: jax.Array      # [F, k]    Σ m (y − y₀)
    sum_zz: jax.Array     # [F, d, d] Σ m (z − z₀)(z − z₀)ᵀ
    sum_zy: jax.Array     # [F, d, k] Σ m (z − z₀)(y − y₀)ᵀ
    shift_z: jax.Array    # [d]
    shift_y: jax.Array    # [k]


@jax.jit
def _rows_moments(z, y, rows, valid, shift_z, shift_y):
    """Shifted sums over z[rows], y[rows] with rows [C, c] (row ids) and valid [C, c] (0 for
    padding); one gathered [c, d] chunk at a time."""
    d, k = z.shape[1], y.shape[1]

    def body(i, acc):
        v = valid[i][:, None]
        zc = (z[rows[i]].astype(jnp.float32) - shift_z) * v
        yc = (y[rows[i]].astype(jnp.float32) - shift_y) * v
        return (acc[0] + jnp.sum(valid[i]), acc[1] + jnp.sum(zc, axis=0),
                acc[2] + jnp.sum(yc, axis=0),
                acc[3] + jnp.dot(zc.T, zc, precision=HIGHEST),
                acc[4] + jnp.dot(zc.T, yc, precision=HIGHEST))

    zeros = (jnp.float32(0), jnp.zeros((d,), jnp.float32), jnp.zeros((k,), jnp.float32),
             jnp.zeros((d, d), jnp.float32), jnp.zeros((d, k), jnp.float32))
    return jax.lax.fori_loop(0, rows.shape[0], body, zeros)


def ols_moments(z: jax.Array, y: jax.Array, row_sets: Sequence[np.ndarray],
                chunk_size: int = 32768) -> ShiftedMoments:
    """Shifted sums of z [N, d], y [N, k] over each set of row ids in `row_sets` -> [F, …].

    Rows are gathered a chunk at a time (no copy of z); the shift is the mean of all rows.
    """
    z = jnp.asarray(z)
    y = jnp.asarray(y)
    shift_z = jnp.mean(z, axis=0, dtype=jnp.float32)
    shift_y = jnp.mean(y, axis=0, dtype=jnp.float32)
    longest = max(int(r.shape[0]) for r in row_sets)
    n_chunks = max(1, -(-longest // chunk_size))
    chunk = max(1, -(-longest // n_chunks))              # < n_chunks padding rows per set
    sums = []
    for r in row_sets:
        rows = np.zeros(n_chunks * chunk, np.int32)
        valid = np.zeros(n_chunks * chunk, np.float32)
        rows[:r.shape[0]] = np.sort(r)
        valid[:r.shape[0]] = 1
        sums.append(_rows_moments(z, y, jnp.asarray(rows.reshape(n_chunks, chunk)),
                                  jnp.asarray(valid.reshape(n_chunks, chunk)), shift_z, shift_y))
    stacked = [jnp.stack(parts) for parts in zip(*sums)]
    return ShiftedMoments(*stacked, shift_z=shift_z, shift_y=shift_y)


@jax.jit
def ols_solve(m: ShiftedMoments, ridge: float = 0.0) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Coefficients [F, d, k], intercepts [F, k] and, per fit, the smallest fraction of a
    latent column's variance not explained by the columns before it (L_ii² / S_ii; ~0 or NaN
    when S is singular) from shifted moments.

    ridge adds ridge·I to the covariance S (in units of z's variance); 0 is plain OLS.
    """
    n = m.n[:, None]
    mean_z = m.sum_z / n                                                  # [F, d] (shifted)
    mean_y = m.sum_y / n                                                  # [F, k]
    cov = m.sum_zz / n[..., None] - mean_z[:, :, None] * mean_z[:, None, :]
    cross = m.sum_zy / n[..., None] - mean_z[:, :, None] * mean_y[:, None, :]
    d = cov.shape[-1]
    cov = cov + ridge * jnp.eye(d, dtype=cov.dtype)
    chol = jnp.linalg.cholesky(cov)

    def solve(c, rhs):
        return jax.vmap(lambda low, r: jax.scipy.linalg.cho_solve((low, True), r))(c, rhs)

    coef = solve(chol, cross)
    residual = cross - jnp.einsum("fde,fek->fdk", cov, coef, precision=HIGHEST)
    coef = coef + solve(chol, residual)                                   # one refinement step
    intercept = (m.shift_y + mean_y) - jnp.einsum("fd,fdk->fk", m.shift_z + mean_z, coef,
                                                  precision=HIGHEST)
    # L_ii² / S_ii: the fraction of column i's variance not explained by columns < i
    unexplained = jnp.min(jnp.square(jnp.diagonal(chol, axis1=1, axis2=2))
                          / jnp.diagonal(cov, axis1=1, axis2=2), axis=1)
    return coef, intercept, unexplained


def _prepend_union(m: ShiftedMoments) -> ShiftedMoments:
    """Moments of disjoint masks -> the same with their union's moments first (sums add)."""
    def cat(a):
        return jnp.concatenate([jnp.sum(a, axis=0, keepdims=True), a])
    return m._replace(n=cat(m.n), sum_z=cat(m.sum_z), sum_y=cat(m.sum_y),
                      sum_zz=cat(m.sum_zz), sum_zy=cat(m.sum_zy))


def fit_ols(z: jax.Array, y: jax.Array, masks: jax.Array, *, chunk_size: int = 32768,
            ridge: float = 0.0) -> tuple[jax.Array, jax.Array, dict]:
    """Least squares with intercept for every mask in `masks` [F, N] and every column of y.

    Registry contract (see tlgan_jax.fit): returns (coef [F, d, k], intercept [F, k], info);
    when F > 1, masks[0] is the union of masks[1:], which are disjoint: their moments are
    accumulated once and summed for the union.
    """
    if ridge < 0:
        raise ValueError(f"ols: ridge must be >= 0, got {ridge}")
    if chunk_size < 1:
        raise ValueError(f"ols: chunk_size must be >= 1, got {chunk_size}")
    masks = np.asarray(masks) > 0
    counts = masks.sum(axis=1)
    d = z.shape[1]
    if counts.min() <= d and ridge == 0:
        raise ValueError(f"ols: a fit (the training split or one of its halves) has only "
                         f"{int(counts.min())} rows for latent size {d}; least squares needs more "
                         f"rows than latent dimensions (use more samples, split_half=False or "
                         f"ridge > 0)")
    union_of_parts = (masks.shape[0] > 1 and not np.any(masks[1:].sum(axis=0) > 1)
                      and np.array_equal(masks[0], masks[1:].any(axis=0)))
    if union_of_parts:
        moments = _prepend_union(ols_moments(z, y, [np.flatnonzero(m) for m in masks[1:]],
                                             chunk_size))
    else:
        moments = ols_moments(z, y, [np.flatnonzero(m) for m in masks], chunk_size)
    coef, intercept, unexplained = ols_solve(moments, ridge)
    worst = float(jnp.min(unexplained))
    if not bool(jnp.all(jnp.isfinite(coef))) or not worst > SINGULAR_TOL:
        raise ValueError("ols: the latents' covariance is singular or too ill-conditioned for a "
                         "float32 Cholesky (collinear or constant latent columns); pass ridge > 0")
    return coef, intercept, {"chunk_size": chunk_size, "ridge": ridge}
