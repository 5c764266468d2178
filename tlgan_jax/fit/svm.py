"""InterFaceGAN's boundaries: a linear SVM between the extremes of each attribute's score.

Per attribute and fit: sort the fit's rows by score y, take the top and bottom
n_sel = min(int(ratio·n), n // 2) rows (ratio = 0.02 by default), label them 1 / 0 (here
t = ±1) and solve the soft-margin linear SVM with unpenalised intercept that sklearn's
SVC(kernel='linear', C=1) solves,
    min_{w, b}  ½‖w‖² + C Σ_i max(0, 1 − t_i (x_i·w + b)),
here divided by C·n₂ (n₂ = 2·n_sel) and with the hinge replaced by its Huber smoothing
    h_δ(u) = 0 (u >= 1),  (1 − u)² / (2δ) (1 − δ < u < 1),  1 − u − δ/2 (u <= 1 − δ),
which is C¹ and within δ/2 of the hinge; L-BFGS is run for δ = 1, 0.1, 0.01 in turn, each
warm-started from the last (a continuation towards the hinge solution; against sklearn's SVC
the final direction has cosine > 0.99999 on 2×2000 extremes in d = 512, and a further
δ = 0.001 stage costs twice the time for no visible change).
Boundary = w / ‖w‖, intercept dropped (InterFaceGAN); w points towards higher scores.
InterFaceGAN also held out 30% of the extremes as validation; here the whole-sample holdout of
`fit_axes` plays that part.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from tlgan_jax.fit.logistic import minimize_lbfgs

HIGHEST = jax.lax.Precision.HIGHEST
SMOOTHING = (1.0, 0.1, 0.01)


def huber_hinge(u: jax.Array, delta: float) -> jax.Array:
    """Huber-smoothed hinge h_δ(u) (see module doc); equals max(0, 1 − u) as δ → 0."""
    v = 1.0 - u
    return jnp.where(v <= 0, 0.0, jnp.where(v < delta, v * v / (2 * delta), v - delta / 2))


@functools.partial(jax.jit, static_argnames=("max_iter",))
def _svm_solve(x, t, c_reg, tol, smoothing, max_iter: int):
    """Batch of problems: x [B, n, d] rows, t [B, n] in {−1, 0, +1} (0 = padding row),
    smoothing [S] -> w [B, d], b [B], iterations [B], final gradient norm [B]."""

    def solve_one(xb, tb):
        used = jnp.abs(tb)
        n = jnp.sum(used)
        center = jnp.sum(used[:, None] * xb, axis=0) / n
        xc = xb - center
        lam = 1.0 / (c_reg * n)

        def stage(i, carry):
            params, total, _ = carry
            delta = smoothing[i]

            def objective(p):
                margin = tb * (jnp.dot(xc, p["w"], precision=HIGHEST) + p["b"])
                hinge = jnp.sum(used * huber_hinge(margin, delta)) / n
                return hinge + 0.5 * lam * jnp.sum(jnp.square(p["w"]))

            params, iters, grad = minimize_lbfgs(objective, params, tol=tol, max_iter=max_iter)
            return params, total + iters, optax.tree_utils.tree_norm(grad)

        init = ({"w": jnp.zeros(xb.shape[1], jnp.float32), "b": jnp.float32(0.0)},
                jnp.int32(0), jnp.float32(jnp.inf))
        params, total, gnorm = jax.lax.fori_loop(0, smoothing.shape[0], stage, init)
        return params["w"], params["b"] - jnp.dot(center, params["w"]), total, gnorm

    return jax.vmap(solve_one)(x, t)


def select_extremes(scores: np.ndarray, rows: np.ndarray, ratio: float
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the top and bottom int(ratio·n) scores among `rows` -> (row ids, ±1 labels).

    n_sel = min(int(ratio·n), n // 2) per side (InterFaceGAN's `chosen_num`); ties in the
    scores are broken by row order.
    """
    n = rows.shape[0]
    n_sel = min(int(n * ratio), n // 2)
    order = rows[np.argsort(scores[rows], kind="stable")]
    idx = np.concatenate([order[::-1][:n_sel], order[:n_sel]])
    return idx, np.concatenate([np.ones(n_sel, np.float32), -np.ones(n_sel, np.float32)])


def fit_svm(z: jax.Array, y: jax.Array, masks: jax.Array, *, ratio: float = 0.02, C: float = 1.0,
            tol: float = 1e-5, max_iter: int = 300, smoothing: tuple[float, ...] = SMOOTHING,
            max_batch_elements: int = 2 ** 27) -> tuple[jax.Array, jax.Array, dict]:
    """Linear SVM between score extremes for every mask [F, N] and every column of y [N, k].

    Registry contract (see tlgan_jax.fit): returns (coef [F, d, k], intercept [F, k], info).
    All F·k problems are padded to one size and solved in vmapped batches of at most
    `max_batch_elements` gathered floats (one compilation per call shape).
    """
    if not 0 < ratio <= 0.5:
        raise ValueError(f"svm: ratio must be in (0, 0.5], got {ratio}")
    if not C > 0:
        raise ValueError(f"svm: C must be > 0, got {C}")
    if not smoothing or any(not s > 0 for s in smoothing):
        raise ValueError(f"svm: smoothing must be a non-empty sequence of positive widths, "
                         f"got {smoothing}")
    if not tol > 0 or max_iter < 1:
        raise ValueError(f"svm: need tol > 0 and max_iter >= 1, got tol={tol}, max_iter={max_iter}")
    z = jnp.asarray(z, jnp.float32)
    scores = np.asarray(y, np.float32)
    masks = np.asarray(masks) > 0
    n_fits, d, k = masks.shape[0], z.shape[1], scores.shape[1]
    picks = []                                   # (fit, attribute, rows, labels)
    n_selected = []
    for f in range(n_fits):
        rows = np.flatnonzero(masks[f])
        n_sel = min(int(rows.shape[0] * ratio), rows.shape[0] // 2)
        if n_sel < 1:
            raise ValueError(f"svm: ratio {ratio} of {rows.shape[0]} rows selects no samples; "
                             f"use more samples or a larger ratio")
        n_selected.append(n_sel)
        picks += [(f, a, *select_extremes(scores[:, a], rows, ratio)) for a in range(k)]
    width = 2 * max(n_selected)
    batch = max(1, min(len(picks), max_batch_elements // (width * d)))
    coef = np.zeros((n_fits, d, k), np.float32)
    intercept = np.zeros((n_fits, k), np.float32)
    iters = np.zeros((n_fits, k), np.int32)
    gnorm = np.zeros((n_fits, k), np.float32)
    smooth = jnp.asarray(smoothing, jnp.float32)
    for p0 in range(0, len(picks), batch):
        group = picks[p0:p0 + batch]
        group = group + [group[0]] * (batch - len(group))        # same shape every batch
        rows = np.zeros((batch, width), np.int64)
        labels = np.zeros((batch, width), np.float32)
        for j, (_, _, idx, lab) in enumerate(group):
            rows[j, :idx.shape[0]] = idx
            labels[j, :idx.shape[0]] = lab
        w, b, it, g = (np.asarray(v) for v in _svm_solve(
            z[jnp.asarray(rows)], jnp.asarray(labels), jnp.float32(C), jnp.float32(tol), smooth,
            max_iter))
        for j, (f, a, _, _) in enumerate(picks[p0:p0 + batch]):
            coef[f, :, a], intercept[f, a], iters[f, a], gnorm[f, a] = w[j], b[j], it[j], g[j]
    info = {"ratio": ratio, "C": C, "tol": tol, "max_iter": max_iter, "smoothing": list(smoothing),
            "n_selected_per_side": n_selected, "iterations": iters, "grad_norm": gnorm}
    return jnp.asarray(coef), jnp.asarray(intercept), info
