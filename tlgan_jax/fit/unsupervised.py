"""Unsupervised candidate directions (SeFa, GANSpace) and how they become attribute axes.

SeFa (Shen & Zhou 2021), closed form from the generator's first layer h = z·W (W [d, m]):
    Ŵ = W with every column scaled to unit norm,  Ŵ Ŵᵀ = V Λ Vᵀ (eigh, Λ descending);
    the candidates are the top-k eigenvectors v_1 … v_k (unit vectors in z-space).
GANSpace (Härkönen et al. 2020) for z-input GANs: PCA of an intermediate activation
h = f(z) [m] over M fresh latents, principal directions u_1 … u_k (top-k of the covariance,
here by randomized subspace iteration: a few streamed passes, no m × m matrix), then the
PCA coordinates x_j = (h − μ)·u_j / s_j of M more fresh latents are regressed back to z by
least squares without intercept, z ≈ x·B (B [k, d]), and the candidates are the rows of B,
normalised (GANSpace's `linreg_lstsq`).
Neither uses labels. To turn candidates c_1 … c_k into one axis per attribute a (the
registry's `fit_sefa` / `fit_ganspace`), each fit's rows pick
    j*(a) = argmax_j |corr(z·c_j, y_a)|,   axis = sign(corr) · c_j*  (the attribute increases),
and report coef = slope · c_j* with slope = cov(z·c_j*, y_a) / var(z·c_j*) (score change per
unit step, as for OLS) and the matching intercept. `candidate` (j*) and `candidate_corr`
(|corr|) are per-attribute diagnostics.

Which weight and which activation: the generator's own hooks `gen.first_layer(params)` (W
[d, m]) and `gen.features(params, z)` (see tlgan_jax.generators.core; DCGAN: the `project`
kernel and relu(project(z)); pg-GAN: `4x4/Dense/weight` and PN(lrelu(dense(PN(z))))).
  StyleGAN2: in z, the mapping's Dense0 weight and f(z) = w; in W (`gen.in_space("w")`), SeFa's
      W is the style weights of every conv layer and the last ToRGB side by side (SeFa's
      'all' layers) and GANSpace's activation is w itself (PCA in W); none in W+.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

HIGHEST = jax.lax.Precision.HIGHEST
DEFAULT_NUM_DIRECTIONS = 20
DEFAULT_GANSPACE_SAMPLES = 20000

FeatureFn = Callable[[jax.Array], jax.Array]      # z [N, d] -> activations [N, m]


# ----------------------------------------------------------------------------- generator hooks

def _hook(gen, name: str, instead: str):
    hook = getattr(gen, name, None)
    if hook is None:
        raise ValueError(f"generator {gen.name!r} has no {name!r} hook (see "
                         f"tlgan_jax.generators.core): pass {instead}= (or directions=) "
                         f"yourself, or build the Generator with {name}=...")
    return hook


def first_layer_weight(gen) -> np.ndarray:
    """The matrix W [latent_dim, m] of the generator's first layer h = z·W (its
    `first_layer` hook)."""
    w = np.asarray(_hook(gen, "first_layer", "weight")(gen.params), np.float32)
    if w.ndim != 2 or w.shape[0] != gen.latent_dim:
        raise ValueError(f"generator {gen.name!r}: first-layer weight has shape {w.shape}, "
                         f"expected [latent_dim={gen.latent_dim}, m]")
    return w


def first_layer_features(gen) -> FeatureFn:
    """z [N, d] -> the generator's intermediate activation [N, m] (its `features` hook)."""
    fn = _hook(gen, "features", "features")
    return functools.partial(fn, gen.params)


# ----------------------------------------------------------------------------- SeFa

def sefa_directions(weight, num_directions: int | None = DEFAULT_NUM_DIRECTIONS
                    ) -> tuple[np.ndarray, np.ndarray]:
    """SeFa: (candidates [d, k] unit columns, eigenvalues [k]) of the first-layer weight
    W [d, m] (h = z·W), largest eigenvalue first; k = num_directions (None: all d)."""
    w = np.asarray(weight, np.float64)
    if w.ndim != 2 or w.shape[0] < 1 or w.shape[1] < 1:
        raise ValueError(f"sefa: the first-layer weight must be a matrix [latent_dim, m], got "
                         f"shape {w.shape}")
    if not np.all(np.isfinite(w)):
        raise ValueError("sefa: the first-layer weight contains NaN or infinite values")
    norms = np.linalg.norm(w, axis=0, keepdims=True)
    if np.any(norms == 0):
        raise ValueError(f"sefa: {int(np.sum(norms == 0))} column(s) of the first-layer weight "
                         f"are zero and cannot be normalised")
    w = w / norms
    k = _num_directions(num_directions, w.shape[0], "sefa")
    values, vectors = np.linalg.eigh(w @ w.T)
    order = np.argsort(values)[::-1][:k]
    vectors = vectors[:, order]
    # eigenvectors have no sign; fix one (largest-magnitude entry positive) for reproducibility
    vectors *= np.sign(vectors[np.argmax(np.abs(vectors), axis=0), np.arange(k)])
    return vectors.astype(np.float32), values[order].astype(np.float32)


def _num_directions(k, d: int, what: str) -> int:
    if k is None:
        return d
    if not 1 <= int(k) <= d:
        raise ValueError(f"{what}: num_directions must be in [1, {d}] (the latent size), got {k}")
    return int(k)


# ----------------------------------------------------------------------------- GANSpace

@functools.partial(jax.jit, static_argnames=("features",))
def _feature_sums(features, z):
    return jnp.sum(features(z), axis=0)


@functools.partial(jax.jit, static_argnames=("features",))
def _cov_times(features, z, mean, q):
    """Σ_i (h_i − μ)(h_i − μ)ᵀ q over the chunk: (H − μ)ᵀ((H − μ) q)."""
    h = features(z) - mean
    return jnp.dot(h.T, jnp.dot(h, q, precision=HIGHEST), precision=HIGHEST)


@functools.partial(jax.jit, static_argnames=("features",))
def _coord_moments(features, z, mean, basis, stdev):
    x = jnp.dot(features(z) - mean, basis, precision=HIGHEST) / stdev      # [c, k]
    return (jnp.dot(x.T, x, precision=HIGHEST), jnp.dot(x.T, z, precision=HIGHEST))


def pca_top(features: FeatureFn, z: np.ndarray, k: int, key: jax.Array, *,
            oversample: int = 10, power_iters: int = 6, chunk_size: int = 4096
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-k principal directions of h = features(z) over the rows of z, streamed in chunks.

    Randomized subspace iteration (Halko et al.): Q ← orth(C Q) power_iters times from a
    Gaussian start with k + oversample columns (C the covariance, applied chunk by chunk, so
    no [m, m] matrix and no [M, m] activation matrix is stored), then the Rayleigh-Ritz
    eigenproblem of Qᵀ C Q. Returns (mean μ [m], directions U [m, k], variances [k]),
    largest variance first.
    """
    z = np.asarray(z, np.float32)
    chunks = [jnp.asarray(z[s:s + chunk_size]) for s in range(0, z.shape[0], chunk_size)]
    m = int(jax.eval_shape(features, jax.ShapeDtypeStruct((1, z.shape[1]), jnp.float32)).shape[1])
    if k > m:
        raise ValueError(f"ganspace: {k} directions requested but the activation has {m} units")
    mean = sum(_feature_sums(features, c) for c in chunks) / z.shape[0]
    width = min(k + oversample, m)

    def cov_times(q):
        out = sum(_cov_times(features, c, mean, q) for c in chunks)
        return out / (z.shape[0] - 1)

    q = jax.random.normal(key, (m, width), jnp.float32)
    for _ in range(power_iters):
        q, _ = jnp.linalg.qr(cov_times(q))
    small = jnp.dot(q.T, cov_times(q), precision=HIGHEST)
    values, vectors = jnp.linalg.eigh((small + small.T) / 2)
    order = jnp.argsort(values)[::-1][:k]
    basis = jnp.dot(q, vectors[:, order], precision=HIGHEST)
    return np.asarray(mean), np.asarray(basis), np.asarray(values[order])


def ganspace_directions(features: FeatureFn, latent_dim: int, key: jax.Array,
                        num_directions: int = DEFAULT_NUM_DIRECTIONS,
                        num_samples: int = DEFAULT_GANSPACE_SAMPLES, *,
                        sample_latents: Callable[[jax.Array, int], jax.Array] | None = None,
                        chunk_size: int = 4096, power_iters: int = 6
                        ) -> tuple[np.ndarray, np.ndarray]:
    """GANSpace for a z-input GAN: (candidates [d, k] unit columns, activation variances [k]).

    PCA of features(z) over num_samples latents drawn with fold_in(key, 0), then the scaled
    PCA coordinates of num_samples more latents (fold_in(key, 1)) regressed back to z by
    least squares without intercept (see module doc). sample_latents(key, n) defaults to
    N(0, I_latent_dim).
    """
    k = _num_directions(num_directions, latent_dim, "ganspace")
    if num_samples < 2 * k:
        raise ValueError(f"ganspace: num_samples must be at least 2·num_directions = {2 * k}, "
                         f"got {num_samples}")
    draw = sample_latents or (lambda kk, n: jax.random.normal(kk, (n, latent_dim), jnp.float32))
    z_pca = np.asarray(draw(jax.random.fold_in(key, 0), num_samples), np.float32)
    mean, basis, variances = pca_top(features, z_pca, k, jax.random.fold_in(key, 2),
                                     chunk_size=chunk_size, power_iters=power_iters)
    stdev = jnp.sqrt(jnp.maximum(jnp.asarray(variances), 1e-30))
    z_reg = np.asarray(draw(jax.random.fold_in(key, 1), num_samples), np.float32)
    xtx, xtz = 0.0, 0.0
    for s in range(0, num_samples, chunk_size):
        a, b = _coord_moments(features, jnp.asarray(z_reg[s:s + chunk_size]), jnp.asarray(mean),
                              jnp.asarray(basis), stdev)
        xtx, xtz = xtx + np.asarray(a, np.float64), xtz + np.asarray(b, np.float64)
    coef = np.linalg.solve(xtx, xtz)                                     # [k, d]: z ≈ x · coef
    norms = np.linalg.norm(coef, axis=1, keepdims=True)
    if not np.all(np.isfinite(coef)) or np.any(norms == 0):
        raise ValueError("ganspace: the regression back to z failed (degenerate activations)")
    return (coef / norms).T.astype(np.float32), variances.astype(np.float32)


# ----------------------------------------------------------------------------- candidates -> axes

@jax.jit
def _match(z, y, masks, candidates):
    """Per fit and attribute: best candidate by |corr(z·c, y)| over the fit's rows."""
    proj = jnp.dot(z, candidates, precision=HIGHEST)                      # [N, m]
    n = jnp.sum(masks, axis=1)                                            # [F]
    mean_p = jnp.dot(masks, proj, precision=HIGHEST) / n[:, None]         # [F, m]
    mean_y = jnp.dot(masks, y, precision=HIGHEST) / n[:, None]            # [F, k]
    var_p = jnp.dot(masks, proj * proj, precision=HIGHEST) / n[:, None] - mean_p ** 2
    var_y = jnp.dot(masks, y * y, precision=HIGHEST) / n[:, None] - mean_y ** 2
    cross = jnp.einsum("fn,nm,nk->fmk", masks, proj, y, precision=HIGHEST) / n[:, None, None]
    cov = cross - mean_p[:, :, None] * mean_y[:, None, :]                 # [F, m, k]
    corr = cov / jnp.sqrt(jnp.maximum(var_p[:, :, None] * var_y[:, None, :], 1e-30))
    best = jnp.argmax(jnp.abs(corr), axis=1)                              # [F, k]
    pick = jnp.take_along_axis
    c = pick(corr, best[:, None, :], axis=1)[:, 0]                        # [F, k]
    slope = (pick(cov, best[:, None, :], axis=1)[:, 0]
             / jnp.maximum(pick(var_p, best, axis=1), 1e-30))
    coef = candidates[:, best] * slope[None]                              # [d, F, k]
    intercept = mean_y - slope * pick(mean_p, best, axis=1)
    return jnp.moveaxis(coef, 0, 1), intercept, best, c


def match_candidates(z, y, masks, candidates) -> tuple[jax.Array, jax.Array, dict]:
    """Best-matching candidate per fit and attribute (see module doc) in the registry's form:
    (coef [F, d, k], intercept [F, k], info with `candidate` and `candidate_corr` [F, k])."""
    cand = np.asarray(candidates, np.float32)
    d = z.shape[1]
    if cand.ndim != 2 or cand.shape[0] != d or cand.shape[1] < 1:
        raise ValueError(f"candidate directions must have shape [latent_dim={d}, m >= 1], got "
                         f"{cand.shape}")
    if not np.all(np.isfinite(cand)):
        raise ValueError("candidate directions contain NaN or infinite values")
    cand = cand / np.maximum(np.linalg.norm(cand, axis=0, keepdims=True), 1e-30)
    coef, intercept, best, corr = _match(jnp.asarray(z, jnp.float32), jnp.asarray(y, jnp.float32),
                                         jnp.asarray(masks, jnp.float32), jnp.asarray(cand))
    info = {"num_directions": int(cand.shape[1]), "candidate": np.asarray(best),
            "candidate_corr": np.abs(np.asarray(corr))}
    return coef, intercept, info


def _one_source(what: str, **sources: Any) -> str:
    given = [k for k, v in sources.items() if v is not None]
    if len(given) != 1:
        raise ValueError(f"{what}: pass exactly one of {', '.join(f'{k}=' for k in sources)} "
                         f"(got {given or 'none'})")
    return given[0]


def fit_sefa(z: jax.Array, y: jax.Array, masks: jax.Array, *, generator=None, weight=None,
             directions=None, num_directions: int | None = DEFAULT_NUM_DIRECTIONS
             ) -> tuple[jax.Array, jax.Array, dict]:
    """Registry method "sefa": SeFa candidates of `generator`'s first layer (or of `weight`
    [d, m], or precomputed `directions` [d, k]), best match per attribute (module doc)."""
    source = _one_source("sefa", generator=generator, weight=weight, directions=directions)
    if source == "generator":
        weight = first_layer_weight(generator)
    if source != "directions":
        if np.shape(weight)[0] != z.shape[1]:
            raise ValueError(f"sefa: first-layer weight has {np.shape(weight)[0]} rows but the "
                             f"latents have size {z.shape[1]}")
        directions, _ = sefa_directions(weight, num_directions)
    coef, intercept, info = match_candidates(z, y, masks, directions)
    info["candidates_from"] = source
    return coef, intercept, info


def fit_ganspace(z: jax.Array, y: jax.Array, masks: jax.Array, *, generator=None, features=None,
                 directions=None, num_directions: int = DEFAULT_NUM_DIRECTIONS,
                 num_samples: int = DEFAULT_GANSPACE_SAMPLES, seed: int = 0
                 ) -> tuple[jax.Array, jax.Array, dict]:
    """Registry method "ganspace": GANSpace candidates from `generator`'s first activation (or
    a `features` function z -> [N, m]; or precomputed `directions` [d, k]) computed on
    num_samples fresh latents drawn with `seed`, best match per attribute (module doc)."""
    source = _one_source("ganspace", generator=generator, features=features,
                         directions=directions)
    if source != "directions":
        sampler = None
        if source == "generator":
            features = first_layer_features(generator)
            sampler = lambda kk, n: generator.canonical_latents(generator.sample_latents(kk, n))
        directions, _ = ganspace_directions(features, z.shape[1], jax.random.key(seed),
                                            num_directions, num_samples, sample_latents=sampler)
    coef, intercept, info = match_candidates(z, y, masks, directions)
    info.update(candidates_from=source, num_samples=num_samples if source != "directions" else None,
                seed=seed if source != "directions" else None)
    return coef, intercept, info


__all__ = ["fit_ganspace", "fit_sefa", "first_layer_features", "first_layer_weight",
           "ganspace_directions", "match_candidates", "pca_top", "sefa_directions"]
