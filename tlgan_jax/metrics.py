"""Diagnostics for fitted axes: ROC AUC, coefficient of determination R², cosine.

AUC(s, l) = P(s⁺ > s⁻) + ½ P(s⁺ = s⁻) over positive/negative pairs, computed from average
ranks (Mann-Whitney): AUC = (mean rank of positives − (n⁺ + 1)/2) / n⁻.
R²(ŷ, y) = 1 − Σ(y − ŷ)² / Σ(y − ȳ)², per column; corr²(x, t) = corr(x, t)², per column.
cos(a, b) = a·b / (‖a‖‖b‖), per column.
All return NaN where undefined (one class only; constant targets; a zero vector).
These run on small host arrays (held-out scores [n, k], coefficient vectors) in float64
NumPy: exact, and no compilation per array shape.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n of a 1-D array, ties given the mean of the ranks they span."""
    x = np.asarray(x)
    order = np.argsort(x, kind="stable")
    sorted_x = x[order]
    starts = np.r_[True, sorted_x[1:] != sorted_x[:-1]]
    group = np.cumsum(starts) - 1                               # tie group of each sorted item
    first = np.flatnonzero(starts)                              # 0-based start of each group
    last = np.r_[first[1:], x.shape[0]] - 1
    ranks = np.empty(x.shape[0], np.float64)
    ranks[order] = (first[group] + last[group]) / 2.0 + 1.0
    return ranks


def roc_auc(scores, labels) -> float:
    """ROC AUC of `scores` [n] against boolean `labels` [n]; ties count ½; NaN with one class."""
    scores = np.asarray(scores, np.float64).ravel()
    labels = np.asarray(labels, bool).ravel()
    if scores.shape != labels.shape:
        raise ValueError(f"roc_auc: {scores.shape[0]} scores but {labels.shape[0]} labels")
    n_pos = int(labels.sum())
    n_neg = labels.shape[0] - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    mean_rank_pos = average_ranks(scores)[labels].mean()
    return float((mean_rank_pos - (n_pos + 1) / 2.0) / n_neg)


def roc_auc_columns(scores, labels) -> np.ndarray:
    """Column-wise ROC AUC: scores [n, k], labels [n, k] -> [k]."""
    scores, labels = np.asarray(scores), np.asarray(labels)
    return np.array([roc_auc(scores[:, a], labels[:, a]) for a in range(scores.shape[1])])


def r2_score(pred, y) -> np.ndarray:
    """Column-wise R² of predictions `pred` [n, k] for targets `y` [n, k] -> [k]."""
    pred = np.asarray(pred, np.float64)
    y = np.asarray(y, np.float64)
    ss_res = np.sum(np.square(y - pred), axis=0)
    ss_tot = np.sum(np.square(y - y.mean(axis=0)), axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ss_tot > 0, 1.0 - ss_res / ss_tot, np.nan)


def corr2_columns(x, t) -> np.ndarray:
    """[k] squared Pearson correlation of each column of x [N, k] with the same column of
    t [N, k] (the R² of the best affine predictor of t from x); NaN where either is constant."""
    x, t = np.asarray(x, np.float64), np.asarray(t, np.float64)
    out = np.full(x.shape[1], np.nan)
    for a in range(x.shape[1]):
        if np.std(x[:, a]) > 0 and np.std(t[:, a]) > 0:
            out[a] = np.corrcoef(x[:, a], t[:, a])[0, 1] ** 2
    return out


def cosine(a, b) -> np.ndarray:
    """Cosine between matching columns of `a` and `b` ([d] or [d, k]) -> scalar or [k]."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    den = np.linalg.norm(a, axis=0) * np.linalg.norm(b, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, np.sum(a * b, axis=0) / den, np.nan)


def cosine_to_truth_from_split_half(split_half_cos) -> np.ndarray:
    """Estimated cosine between a fit on both halves and the population axis.

    Model (ANCHORS §Theory): a fit on n samples has cos(fit, truth) = (1 + a/n)^(-1/2) with
    isotropic estimation noise, so two independent half fits (n/2 each) have
    cos = 1 / (1 + 2a/n), i.e. a/n = (1/s − 1)/2 and cos(full fit, truth) = (1 + a/n)^(-1/2).
    NaN when s <= 0 (no usable signal).
    """
    s = np.asarray(split_half_cos, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(s > 0, (1.0 + (1.0 / s - 1.0) / 2.0) ** -0.5, np.nan)


# ----------------------------------------------------------------------------- images

def _unit(images) -> jax.Array:
    return jnp.clip((jnp.asarray(images, jnp.float32) + 1.0) * 0.5, 0.0, 1.0)


def psnr(images, targets) -> np.ndarray:
    """PSNR in dB per image of [-1, 1] NHWC images, computed on [0, 1] (clipped) values."""
    a, b = _unit(images), _unit(targets)
    mse = jnp.mean(jnp.square(a - b), axis=(1, 2, 3))
    return np.asarray(-10.0 * jnp.log10(jnp.maximum(mse, 1e-12)))


def _gaussian_window(sigma: float = 1.5, truncate: float = 3.5) -> np.ndarray:
    r = int(truncate * sigma + 0.5)
    x = np.arange(-r, r + 1, dtype=np.float64)
    w = np.exp(-0.5 * (x / sigma) ** 2)
    return (w / w.sum()).astype(np.float32)


def ssim(images, targets) -> np.ndarray:
    """SSIM per image (Wang et al. 2004; see the module doc) of [-1, 1] NHWC images."""
    a, b = _unit(images), _unit(targets)
    w = jnp.asarray(_gaussian_window())
    k = w.shape[0]
    if a.shape[1] < k or a.shape[2] < k:
        raise ValueError(f"ssim needs images of at least {k}×{k}, got {a.shape[1:3]}")

    def blur(x):                                   # separable 'valid' Gaussian filter, NHWC
        n, h, wd, c = x.shape
        x = jnp.moveaxis(x, -1, 1).reshape(n * c, 1, h, wd)
        x = jax.lax.conv(x, w.reshape(1, 1, k, 1), (1, 1), "VALID",
                         precision=jax.lax.Precision.HIGHEST)
        x = jax.lax.conv(x, w.reshape(1, 1, 1, k), (1, 1), "VALID",
                         precision=jax.lax.Precision.HIGHEST)
        return x.reshape(n, c, *x.shape[2:])

    c1, c2 = 0.01 ** 2, 0.03 ** 2
    ux, uy = blur(a), blur(b)
    vx = blur(a * a) - ux * ux
    vy = blur(b * b) - uy * uy
    vxy = blur(a * b) - ux * uy
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return np.asarray(jnp.mean(s, axis=(1, 2, 3)))
