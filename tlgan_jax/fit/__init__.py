"""Fitting attribute axes: latents z [N, d] and attribute scores y [N, k] -> `Axes`.

    axes = fit_axes(z, y, method="ols", names=(...), key=jax.random.key(0))

Rows are split at random (with `key`) into a holdout (fraction `holdout`) and a training
split; the training split is cut into two disjoint halves. The method fits the whole training
split (the returned axes) and each half (for the split-half cosine). Diagnostics per attribute:
  auc                held-out ROC AUC of z·w against labels y > 0 (binary attributes);
  r2                 held-out R² (continuous attributes; ols: of the linear prediction, also for
                     binary ones; svm: squared correlation of z·w with y, i.e. the R² of the best
                     affine predictor along the axis);
  auc_extremes       (svm) held-out AUC between the top and bottom `ratio` of the scores;
  split_half_cosine  cosine between the directions fitted on the two training halves;
  cosine_to_truth_est   (1 + (1/s − 1)/2)^(-1/2) from the split-half cosine s: the cosine
                     between the returned axis and the population axis if the estimation
                     noise is isotropic (see metrics.cosine_to_truth_from_split_half);
  coef_norm, intercept  ‖w‖ and b of the training fit (ols: score change per unit step);
  n_train, n_holdout.
Methods (registry `METHODS`, name -> function): ols, logistic, svm, and the unsupervised
baselines sefa and ganspace (fit/unsupervised.py: label-free candidate directions from the
generator; each attribute gets its best-matching candidate on the training rows).
  fn(z [N, d], y [N, k], masks [F, N], **opts) -> (coef [F, d, k], intercept [F, k], info)
  masks are 0/1 row selections, one per fit; when F > 1, masks[0] is the union of masks[1:]
  (the training split and its disjoint halves). `info` is a dict; entries that are arrays with
  leading dims [F, k] are reported per attribute for the training fit.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from tlgan_jax import metrics
from tlgan_jax.axes import Axes
from tlgan_jax.fit.logistic import fit_logistic
from tlgan_jax.fit.ols import fit_ols
from tlgan_jax.fit.svm import fit_svm, select_extremes
from tlgan_jax.fit.unsupervised import fit_ganspace, fit_sefa

FitFn = Callable[..., tuple[jax.Array, jax.Array, dict]]

METHODS: dict[str, FitFn] = {
    "ols": fit_ols,
    "logistic": fit_logistic,
    "svm": fit_svm,
    "sefa": fit_sefa,            # unsupervised: opts generator= | weight= | directions=
    "ganspace": fit_ganspace,    # unsupervised: opts generator= | features= | directions=
}
# The label-free baselines (fit/unsupervised.py): each attribute picks a candidate direction.
UNSUPERVISED = ("sefa", "ganspace")
# Methods whose targets are binary labels y > 0 (every attribute must be binary).
BINARY_ONLY = frozenset({"logistic"})
# Default `binary` flags when the caller gives none (only used for diagnostics).
DEFAULT_BINARY = {"ols": False, "logistic": True, "svm": True}


def clip_logits(y: np.ndarray, binary: Sequence[bool], bound: float = 3.0) -> np.ndarray:
    """TL-GAN's targets: binary scores (logits) clipped to [-bound, bound]; others as given."""
    y = np.array(y, np.float32, copy=True)
    cols = np.asarray(binary, bool)
    y[:, cols] = np.clip(y[:, cols], -bound, bound)
    return y


def method_targets(method: str, y: np.ndarray, binary: Sequence[bool], clip: float = 3.0,
                   thresholds: np.ndarray | None = None) -> tuple[np.ndarray, tuple[bool, ...]]:
    """(targets, binary flags) that `method` is fitted on, from scores y [N, k]:
      logistic        labels y > 0; continuous attributes split at `thresholds` (default:
                      their median), so every attribute is binary;
      svm             the raw scores (it selects the extremes itself);
      ols and others  binary logits clipped to ±clip (`clip_logits`, TL-GAN), others as given.
    """
    y = np.asarray(y)
    if method == "logistic":
        thresholds = np.median(y, axis=0) if thresholds is None else thresholds
        shift = np.where(np.asarray(binary, bool), 0.0, thresholds)
        return (y - shift[None, :]).astype(np.float32), (True,) * len(binary)
    if method == "svm":
        return y, tuple(binary)
    return clip_logits(y, binary, clip), tuple(binary)


def fit_axes(z, y, method: str = "ols", names: Sequence[str] | None = None,
             binary: bool | Sequence[bool] | None = None, holdout: float = 0.2,
             key: jax.Array | None = None, *, split_half: bool = True,
             metadata: Mapping[str, Any] | None = None, **opts) -> Axes:
    """Fit one unit axis per attribute (see module doc) and return them as `Axes`.

    z: [N, d] latents (the ones the generator sees, e.g. `gen.canonical_latents(z)`);
    y: [N, k] scores, or a mapping {name: [N]} (then `names` defaults to its keys);
    method: a key of METHODS ("ols" — TL-GAN; "logistic"; "svm" — InterFaceGAN);
    names: k attribute names (default "attr0", …); binary: per attribute (or one bool for all)
    whether y is a logit whose sign is the label (default: ols False, logistic/svm True);
    holdout: fraction of rows kept out of every fit for the held-out metrics (0 = none);
    key: PRNG key for the split (required unless holdout == 0 and split_half is False);
    split_half: also fit the two halves of the training split (split-half cosine);
    metadata: extra entries for `Axes.metadata`; opts: passed to the method
    (ols: chunk_size, ridge; logistic: l2, tol, max_iter; svm: ratio, C, tol, max_iter;
    sefa: generator | weight | directions, num_directions; ganspace: generator | features |
    directions, num_directions, num_samples, seed).
    """
    if method not in METHODS:
        raise ValueError(f"fit_axes: unknown method {method!r}; known methods: {sorted(METHODS)}")
    if isinstance(y, Mapping):
        if names is None:
            names = tuple(y)
        elif set(names) != set(y):
            raise ValueError(f"fit_axes: names {list(names)} do not match the keys of y {list(y)}")
        y = np.stack([np.asarray(y[n]) for n in names], axis=1) if len(y) else np.zeros((0, 0))
    z_shape, y_shape = getattr(z, "shape", None), getattr(y, "shape", None)
    if z_shape is None or len(z_shape) != 2:
        raise ValueError(f"fit_axes: z must have shape [N, latent_dim], got shape {z_shape}")
    if y_shape is None or len(y_shape) != 2:
        raise ValueError(f"fit_axes: y must have shape [N, k] (one column per attribute; use "
                         f"y[:, None] for one attribute), got shape {y_shape}")
    n_rows, d = z_shape
    k = y_shape[1]
    if y_shape[0] != n_rows:
        raise ValueError(f"fit_axes: z has {n_rows} rows but y has {y_shape[0]}; they must "
                         f"have one row per sample")
    if k == 0 or d == 0:
        raise ValueError(f"fit_axes: need at least one attribute and one latent dimension, got "
                         f"z {z_shape}, y {y_shape}")
    names = tuple(f"attr{i}" for i in range(k)) if names is None else (
        (names,) if isinstance(names, str) else tuple(names))
    if len(names) != k:
        raise ValueError(f"fit_axes: {len(names)} names for {k} attributes (y has shape {y_shape})")
    z = jnp.asarray(z, jnp.float32)
    y = jnp.asarray(y, jnp.float32)
    finite_z, finite_y = (np.asarray(v) for v in _finite(z, y))
    if not finite_z:
        raise ValueError("fit_axes: z contains NaN or infinite values")
    if not finite_y.all():
        raise ValueError(f"fit_axes: y contains NaN or infinite values in attribute(s) "
                         f"{[n for n, ok in zip(names, finite_y) if not ok]}")
    binary = _binary_flags(binary, method, names)
    if not 0 <= holdout < 1:
        raise ValueError(f"fit_axes: holdout must be in [0, 1), got {holdout}")

    # --- split: holdout (-1), training halves (0, 1) -----------------------------------
    n_hold = int(round(holdout * n_rows))
    if holdout > 0 and n_hold < 2:
        raise ValueError(f"fit_axes: holdout {holdout} of {n_rows} rows leaves fewer than 2 "
                         f"held-out rows")
    if key is None and (n_hold > 0 or split_half):
        raise ValueError("fit_axes: key (a jax PRNG key) is required to draw the holdout and "
                         "split-half rows; pass e.g. key=jax.random.key(0)")
    hold_rows, halves = split_rows(key, n_rows, n_hold, split_half)
    train_rows = np.concatenate(halves)
    n_train = train_rows.shape[0]
    if n_train < 4:
        raise ValueError(f"fit_axes: only {n_train} training rows")
    masks = np.zeros((1 + len(halves) if split_half else 1, n_rows), np.float32)
    masks[0, train_rows] = 1
    if split_half:
        masks[1, halves[0]] = 1
        masks[2, halves[1]] = 1
    if method in BINARY_ONLY:
        _check_two_classes(np.asarray(y) > 0, masks > 0, names, method)

    fit_fn = METHODS[method]
    accepted = [p.name for p in inspect.signature(fit_fn).parameters.values()
                if p.kind is inspect.Parameter.KEYWORD_ONLY]
    unknown = sorted(set(opts) - set(accepted))
    if unknown:
        raise ValueError(f"fit_axes: unknown option(s) {unknown} for method {method!r}; it "
                         f"accepts {accepted}")
    coef_out, intercept_out, info = fit_fn(z, y, masks, **opts)
    coef = np.asarray(coef_out, np.float32)
    intercept = np.asarray(intercept_out, np.float32)
    norms = np.linalg.norm(coef[0], axis=0)
    zero = [n for n, v in zip(names, norms) if not v > 0 or not np.isfinite(v)]
    if zero:
        raise ValueError(f"fit_axes: method {method!r} found no direction (zero or non-finite "
                         f"coefficients) for {zero}; is the attribute constant?")
    directions = coef[0] / norms[None, :]

    # --- diagnostics --------------------------------------------------------------------
    diagnostics = {n: {"binary": b, "coef_norm": float(v), "intercept": float(c),
                       "n_train": int(n_train), "n_holdout": int(n_hold)}
                   for n, b, v, c in zip(names, binary, norms, intercept[0])}
    if n_hold > 0:
        scores = np.asarray(_project(z, jnp.asarray(coef[0])))[hold_rows]
        y_hold = np.asarray(y)[hold_rows]
        pred = scores + intercept[0][None, :]
        auc = np.asarray(metrics.roc_auc_columns(scores, y_hold > 0))
        if method == "ols":
            r2 = np.asarray(metrics.r2_score(pred, y_hold))
        else:
            r2 = metrics.corr2_columns(scores, y_hold)
        for a, n in enumerate(names):
            if binary[a]:
                diagnostics[n]["auc"] = float(auc[a])
            if method == "ols" or not binary[a]:
                diagnostics[n]["r2"] = float(r2[a])
            if method == "svm":
                idx, lab = select_extremes(y_hold[:, a], np.arange(n_hold), opts.get("ratio", 0.02))
                diagnostics[n]["auc_extremes"] = (
                    float(metrics.roc_auc(scores[idx, a], lab > 0)) if idx.size else float("nan"))
    if split_half:
        cos = np.asarray(metrics.cosine(coef[1], coef[2]))
        est = np.asarray(metrics.cosine_to_truth_from_split_half(cos))
        for a, n in enumerate(names):
            diagnostics[n]["split_half_cosine"] = float(cos[a])
            diagnostics[n]["cosine_to_truth_est"] = float(est[a])
    for entry, value in info.items():
        arr = np.asarray(value) if isinstance(value, (np.ndarray, jax.Array)) else None
        if arr is not None and arr.ndim == 2 and arr.shape == (masks.shape[0], k):
            for a, n in enumerate(names):
                diagnostics[n][entry] = arr[0, a].item()

    fit_info = {"method": method, "num_samples": int(n_rows), "latent_dim": int(d),
                "holdout": float(holdout), "n_train": int(n_train), "n_holdout": int(n_hold),
                "split_half": bool(split_half), "binary": list(binary),
                "key": _key_data(key),
                "opts": {k_: v for k_, v in info.items()
                         if not isinstance(v, (np.ndarray, jax.Array))}}
    meta = {"fit": fit_info, "latent_dim": int(d), "num_samples": int(n_rows)}
    meta.update(dict(metadata or {}))
    return Axes(jnp.asarray(directions), names, method=method, diagnostics=diagnostics,
                metadata=meta)


def fit_axes_in(gen, z, y, latent_space: str = "z", *, w=None, **kwargs) -> Axes:
    """`fit_axes` in one of a generator's latent spaces, from the z of the samples:
      z   on the canonical z (`gen.canonical_latents`);
      w   on w = mapping(z) (pass `w`, e.g. `Samples.w`, to reuse it);
      w+  fitted on w, then each direction used for every style input: tile(n)/√num_ws (unit).
          For sampled latents every row of w+ is the same w, so this is the minimum-norm
          least-squares direction in w+ (a fit on the flattened w+ would be singular and
          num_ws times larger); editing can then move style inputs separately.
    The axes' metadata records latent_space (and num_ws, w_dim for w / w+); render edits with
    `gen.in_space(latent_space)`. kwargs go to `fit_axes`."""
    gen = gen.z_generator
    gen.check_space(latent_space)
    meta = dict(kwargs.pop("metadata", None) or {}, latent_space=latent_space)
    if latent_space == "z":
        latents = np.asarray(gen.canonical_latents(gen.check_latents(z)))
        return fit_axes(latents, y, metadata=meta, **kwargs)
    ws = gen.w_space
    meta.update(num_ws=ws.num_ws, w_dim=ws.w_dim)
    latents = np.asarray(gen.encode(z, "w") if w is None else w, np.float32)
    if latents.shape != (np.shape(z)[0], ws.w_dim):
        raise ValueError(f"fit_axes_in: w must have shape [{np.shape(z)[0]}, {ws.w_dim}], got "
                         f"{latents.shape}")
    axes = fit_axes(latents, y, metadata=meta, **kwargs)
    if latent_space == "w":
        return axes
    scale = 1.0 / np.sqrt(ws.num_ws)
    tiled = np.tile(np.asarray(axes.directions), (ws.num_ws, 1)) * scale
    diagnostics = {n: dict(d, **({"coef_norm": d["coef_norm"] * scale}   # score per unit in w+
                                 if d.get("coef_norm") is not None else {}))
                   for n, d in axes.diagnostics.items()}
    return Axes(tiled, axes.names, method=axes.method, diagnostics=diagnostics,
                metadata=axes.metadata)


@jax.jit
def _finite(z, y):
    return jnp.all(jnp.isfinite(z)), jnp.all(jnp.isfinite(y), axis=0)


@jax.jit
def _project(z, w):
    return jnp.dot(z, w, precision=jax.lax.Precision.HIGHEST)


def split_rows(key: jax.Array | None, n_rows: int, n_holdout: int, split_half: bool = True
               ) -> tuple[np.ndarray, list[np.ndarray]]:
    """The rows `fit_axes` uses: (held-out row ids, [training half 0, half 1]) — or
    [all training rows] without split_half — each sorted. A random permutation drawn with
    `key` (rows in order when key is None): its first n_holdout entries are held out, the
    rest is cut in two halves in permutation order."""
    order = (np.asarray(jax.random.permutation(key, n_rows)) if key is not None
             else np.arange(n_rows))
    train = order[n_holdout:]
    halves = [train[: train.shape[0] // 2], train[train.shape[0] // 2:]] if split_half else [train]
    return np.sort(order[:n_holdout]), [np.sort(h) for h in halves]


def _binary_flags(binary, method: str, names: tuple[str, ...]) -> tuple[bool, ...]:
    k = len(names)
    if binary is None:
        flags = (DEFAULT_BINARY.get(method, False),) * k
    elif isinstance(binary, (bool, np.bool_)):
        flags = (bool(binary),) * k
    else:
        flags = tuple(bool(b) for b in binary)
        if len(flags) != k:
            raise ValueError(f"fit_axes: {len(flags)} binary flags for {k} attributes")
    if method in BINARY_ONLY and not all(flags):
        cont = [n for n, b in zip(names, flags) if not b]
        raise ValueError(f"fit_axes: method {method!r} fits labels y > 0 and needs binary "
                         f"attributes; {cont} are continuous (binary=False): use method='ols' "
                         f"or 'svm' for them")
    return flags


def _check_two_classes(labels: np.ndarray, masks: np.ndarray, names, method: str) -> None:
    which = ["training split", "first training half", "second training half"]
    for f, m in enumerate(masks):
        pos = labels[m].sum(axis=0)
        n = m.sum()
        for a, name in enumerate(names):
            if pos[a] == 0 or pos[a] == n:
                cls = "y <= 0" if pos[a] == 0 else "y > 0"
                raise ValueError(f"fit_axes: attribute {name!r} has only one class ({cls}) in "
                                 f"the {which[f]}; method {method!r} needs both labels")


def _key_data(key) -> list | None:
    if key is None:
        return None
    key = jnp.asarray(key) if not isinstance(key, jax.Array) else key
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    return np.asarray(key).tolist()


__all__ = ["METHODS", "UNSUPERVISED", "fit_axes", "fit_ganspace", "fit_logistic", "fit_ols",
           "fit_sefa", "fit_svm",
           "metrics", "split_rows"]
