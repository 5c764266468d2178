"""Attribute axes in a latent space: unit directions n_a ∈ R^d, one per attribute name.

Disentangling (TL-GAN's "lock"): with locked axes L = (l_1, …, l_m) in the order given,
    l'_1 … l'_m = Gram-Schmidt(l_1, …, l_m)        (in that order; span unchanged)
    n'_a = n_a − Σ_j (n_a·l'_j) l'_j / ‖l'_j‖²      for every other (target) axis,
    all re-normalised.
The targets depend only on span(L), but the locked axes themselves depend on the ORDER of the
lock list (l_1 is kept, l_2 loses its l_1 component, …) whenever they are not orthogonal.
Conditional direction (InterFaceGAN): with condition directions C [m, d] (rows),
    (C Cᵀ) x = C n,   n' = (n − Cᵀ x) / ‖n − Cᵀ x‖,
the projection of n onto the orthogonal complement of span C: the same as a TL-GAN target.
Files (`Axes.save`/`Axes.load`): `axes.npz` written atomically with np.savez, read with
allow_pickle=False: `directions` [d, k] float32, `names` [k] unicode, `method`, `format`, and
`metadata` / `diagnostics` as JSON strings (non-finite numbers stored as null).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from tlgan_jax.files import jsonable, write_npz

FILE_FORMAT = "tlgan_jax.axes/1"
_UNIT_TOL = 1e-3          # |‖n‖ − 1| allowed for stored directions
DEGENERATE_TOL = 1e-4    # residual below this fraction of a vector's norm: it is in the span


class UnknownAxisError(KeyError, ValueError):
    """An axis name that the Axes do not have (both a KeyError and a ValueError)."""

    def __str__(self) -> str:            # KeyError would show the message in quotes
        return str(self.args[0]) if self.args else ""


def _dot(xp, a, b):
    return xp.dot(a, b) if xp is np else jnp.dot(a, b, precision=jax.lax.Precision.HIGHEST)


def locked_directions(directions, locked, tol: float = DEGENERATE_TOL):
    """TL-GAN's lock for a mask, the one implementation (`Axes.disentangle`, the editor's
    compiled render and `orthogonal_to_others` all use it).

    directions V [d, k] (columns need not be unit), locked m [k] bool ->
    (V' [d, k] unit columns, ok [k] bool):
        locked columns in index order:  l'_i = l_i − Q Qᵀ l_i   (Q: the unit l'_j so far),
        every other column:             n'   = n − Q Qᵀ n       (Q: all the locked l'_j),
    each divided by its norm (projections applied twice: "twice is enough").
    ok[i] is False when column i keeps no more than `tol` of its norm: a locked axis in the
    span of the locked ones before it (it then adds nothing to Q and its column is 0), or
    another axis in the locked span. Numpy input is computed in numpy in its own dtype (e.g.
    float64); anything else in JAX at highest precision, jittable with a traced mask, so one
    compiled function serves every lock set.
    """
    xp = np if isinstance(directions, np.ndarray) else jnp
    v = xp.asarray(directions)
    mask = xp.asarray(locked).astype(bool)
    if v.ndim != 2 or mask.shape != (v.shape[1],):
        raise ValueError(f"locked_directions: need directions [d, k] and a mask [k], got shapes "
                         f"{v.shape} and {mask.shape}")
    tiny = 1e-30

    def residual(x, basis):
        for _ in range(2):
            x = x - _dot(xp, basis, _dot(xp, basis.T, x))
        return x

    scale = xp.maximum(xp.linalg.norm(v, axis=0), tiny)
    basis = xp.zeros((v.shape[0], 0), v.dtype)
    lock_ok = []
    for i in range(v.shape[1]):                 # k is static and small: unrolled under jit
        r = residual(v[:, i], basis)
        norm = xp.linalg.norm(r)
        good = norm > tol * scale[i]
        lock_ok.append(good)
        column = xp.where(mask[i] & good, r / xp.maximum(norm, tiny), 0.0).astype(v.dtype)
        basis = xp.concatenate([basis, column[:, None]], axis=1)
    rest = residual(v, basis)
    norms = xp.linalg.norm(rest, axis=0)
    out = xp.where(mask[None, :], basis, rest / xp.maximum(norms, tiny)[None, :])
    ok = xp.where(mask, xp.stack(lock_ok), norms > tol * scale)
    return out, ok


def conditional_direction(n: jax.Array, conditions: jax.Array) -> jax.Array:
    """InterFaceGAN: solve (C Cᵀ) x = C n, n' = n − Cᵀ x, return n'/‖n'‖.

    n: [d]; conditions C: [m, d] (rows; need not be unit or orthogonal, must be independent).
    """
    n = jnp.asarray(n, jnp.float32)
    c = jnp.asarray(conditions, jnp.float32)
    if n.ndim != 1 or c.ndim != 2 or c.shape[1] != n.shape[0]:
        raise ValueError(f"conditional_direction: need n [d] and conditions [m, d], got shapes "
                         f"{n.shape} and {c.shape}")
    _, independent = locked_directions(c.T, jnp.ones(c.shape[0], bool))
    if c.shape[0] > c.shape[1] or not bool(jnp.all(independent)):
        raise ValueError("conditional_direction: the condition directions are linearly "
                         "dependent, so C Cᵀ is singular")
    hi = jax.lax.Precision.HIGHEST
    x = jnp.linalg.solve(jnp.dot(c, c.T, precision=hi), jnp.dot(c, n, precision=hi))
    out = n - jnp.dot(c.T, x, precision=hi)
    norm = float(jnp.linalg.norm(out))
    if not norm > DEGENERATE_TOL * float(jnp.linalg.norm(n)):
        raise ValueError("conditional_direction: n lies in the span of the conditions; nothing "
                         "is left after projecting them out")
    return out / norm


@dataclasses.dataclass(frozen=True, eq=False)
class Axes:
    """k named unit directions in a d-dimensional latent space.

    directions: [d, k] float32 with unit columns (use `Axes.from_vectors` to normalise);
    names: k unique attribute names; method: how they were found ("ols", "logistic", "svm", …);
    diagnostics: {name: {metric: value}} (see tlgan_jax.fit.fit_axes);
    metadata: JSON-serialisable dict (generator, latent_dim, extractors, num_samples, seed, …).
    """
    directions: jax.Array
    names: tuple[str, ...]
    method: str = ""
    diagnostics: dict = dataclasses.field(default_factory=dict)
    metadata: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        d = np.asarray(self.directions)
        if d.ndim != 2:
            raise ValueError(f"Axes: directions must have shape [latent_dim, k], got shape "
                             f"{d.shape}")
        if not np.issubdtype(d.dtype, np.floating):
            raise ValueError(f"Axes: directions must be floating point, got dtype {d.dtype}")
        if not np.all(np.isfinite(d)):
            raise ValueError("Axes: directions contain NaN or infinite values")
        names = (self.names,) if isinstance(self.names, str) else tuple(self.names)
        if not all(isinstance(n, str) and n for n in names):
            raise ValueError(f"Axes: names must be non-empty strings, got {names}")
        if len(names) != d.shape[1]:
            raise ValueError(f"Axes: {len(names)} names for {d.shape[1]} directions "
                             f"(directions have shape {d.shape}, one column per name)")
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"Axes: names must be unique, repeated: {dupes}")
        norms = np.linalg.norm(d.astype(np.float64), axis=0)
        bad = [n for n, v in zip(names, norms) if abs(v - 1.0) > _UNIT_TOL]
        if bad:
            raise ValueError(f"Axes: directions must be unit vectors; not unit: {bad} "
                             f"(use Axes.from_vectors to normalise)")
        object.__setattr__(self, "directions", jnp.asarray(d, jnp.float32))
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "method", str(self.method))
        object.__setattr__(self, "diagnostics",
                           {k: dict(v) for k, v in dict(self.diagnostics).items()})
        object.__setattr__(self, "metadata", dict(self.metadata))

    @classmethod
    def from_vectors(cls, vectors, names: Sequence[str], **kwargs) -> Axes:
        """Axes from arbitrary non-zero column vectors [d, k], normalised to unit length."""
        v = np.asarray(vectors, np.float32)
        if v.ndim != 2:
            raise ValueError(f"Axes: vectors must have shape [latent_dim, k], got shape {v.shape}")
        norms = np.linalg.norm(v, axis=0)
        if not np.all(np.isfinite(v)) or np.any(norms == 0):
            raise ValueError("Axes: vectors must be finite and non-zero")
        return cls(v / norms, tuple(names), **kwargs)

    # --- access ---------------------------------------------------------------------------
    @property
    def latent_dim(self) -> int:
        return int(self.directions.shape[0])

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, name) -> bool:
        return name in self.names

    def __iter__(self):
        return iter(self.names)

    def index(self, name: str) -> int:
        """Column of `name`; UnknownAxisError (a KeyError and ValueError) if absent."""
        try:
            return self.names.index(name)
        except ValueError:
            raise UnknownAxisError(f"unknown axis {name!r}; the axes have "
                                   f"{list(self.names)}") from None

    def _indices(self, names: Iterable[str], what: str) -> list[int]:
        names = [names] if isinstance(names, str) else list(names)
        unknown = [n for n in names if n not in self.names]
        if unknown:
            raise UnknownAxisError(f"{what}: unknown axis name(s) {unknown}; the axes have "
                                   f"{list(self.names)}")
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"{what}: repeated axis name(s) {dupes}")
        return [self.names.index(n) for n in names]

    def __getitem__(self, name: str) -> jax.Array:
        """The unit direction [d] of attribute `name`."""
        return self.directions[:, self.index(name)]

    def select(self, names: Sequence[str]) -> Axes:
        """The axes `names`, in that order (diagnostics kept for them)."""
        idx = self._indices(names, "select")
        keep = [self.names[i] for i in idx]
        return dataclasses.replace(self, directions=self.directions[:, jnp.asarray(idx, jnp.int32)],
                                   names=tuple(keep),
                                   diagnostics={n: self.diagnostics[n] for n in keep
                                                if n in self.diagnostics})

    def cosines(self) -> np.ndarray:
        """[k, k] cosines between the axes (they are unit vectors: Dᵀ D)."""
        d = np.asarray(self.directions, np.float64)
        return d.T @ d

    def with_metadata(self, **entries: Any) -> Axes:
        """A copy with `entries` added to (or replacing entries of) the metadata."""
        return dataclasses.replace(self, metadata={**self.metadata, **entries})

    # --- latent size checks -------------------------------------------------------------
    def check_latent_dim(self, latent_dim: int, generator: str = "the generator") -> None:
        """Raise ValueError unless these axes live in a latent space of size `latent_dim`."""
        if int(latent_dim) != self.latent_dim:
            fitted_for = self.metadata.get("generator")
            extra = f" (the axes' metadata names generator {fitted_for!r})" if fitted_for else ""
            raise ValueError(f"axes were fitted for latent size {self.latent_dim} but generator "
                             f"{generator} has latent size {int(latent_dim)}{extra}")

    def check_generator(self, gen) -> None:
        """`check_latent_dim` for a tlgan_jax Generator (uses gen.latent_dim and gen.name)."""
        self.check_latent_dim(gen.latent_dim, gen.name)

    # --- disentangling ------------------------------------------------------------------
    def disentangle(self, lock: Sequence[str], target: Sequence[str] | str | None = None) -> Axes:
        """TL-GAN's lock: a new Axes where the `lock`ed axes are Gram-Schmidt-orthogonalised
        among themselves IN THE ORDER GIVEN (so the result depends on that order when they
        are not orthogonal), every `target` axis (default: every axis not locked) has its
        projection on the span of the locked ones removed, and all are re-normalised (axes
        neither locked nor targeted are unchanged). An empty lock returns the axes unchanged.
        """
        lock_idx = self._indices(lock, "disentangle lock")
        if not lock_idx:
            return self
        if target is None:
            target_idx = [i for i in range(len(self.names)) if i not in lock_idx]
        else:
            target_idx = self._indices(target, "disentangle target")
            both = [self.names[i] for i in target_idx if i in lock_idx]
            if both:
                raise ValueError(f"disentangle: axes {both} are both locked and targets")
        if len(lock_idx) > self.latent_dim:
            raise ValueError(f"disentangle: cannot lock {len(lock_idx)} axes in a latent space of "
                             f"size {self.latent_dim}")
        cols = jnp.asarray(lock_idx + target_idx)
        moved, ok = locked_directions(self.directions[:, cols],
                                      np.arange(len(cols)) < len(lock_idx))
        ok = np.asarray(ok)
        for j, i in enumerate(lock_idx + target_idx):
            if not ok[j] and j < len(lock_idx):
                raise ValueError(f"disentangle: locked axis {self.names[i]!r} lies in the span of "
                                 f"the axes locked before it")
            if not ok[j]:
                raise ValueError(f"disentangle: axis {self.names[i]!r} lies in the span of the "
                                 f"locked axes; nothing is left after removing them")
        out = self.directions.at[:, cols].set(moved)
        history = list(self.metadata.get("derived", [])) + [
            {"op": "disentangle", "lock": [self.names[i] for i in lock_idx],
             "target": [self.names[i] for i in target_idx]}]
        return dataclasses.replace(self, directions=out,          # every changed column is unit
                                   metadata={**self.metadata, "derived": history})

    def conditional(self, target: str, conditions: Sequence[str]) -> Axes:
        """InterFaceGAN's conditional boundary: a new Axes whose `target` axis is replaced by
        `conditional_direction(n_target, C)` with C the `conditions` axes as rows; the other
        axes are unchanged. For the targets this equals `disentangle(lock=conditions)`."""
        (ti,) = self._indices([target], "conditional target")
        cond_idx = self._indices(conditions, "conditional conditions")
        if not cond_idx:
            return self
        if ti in cond_idx:
            raise ValueError(f"conditional: {target!r} cannot be its own condition")
        n = conditional_direction(self.directions[:, ti],
                                  self.directions[:, jnp.asarray(cond_idx)].T)
        history = list(self.metadata.get("derived", [])) + [
            {"op": "conditional", "target": target,
             "conditions": [self.names[i] for i in cond_idx]}]
        return dataclasses.replace(self, directions=self.directions.at[:, ti].set(n),
                                   metadata={**self.metadata, "derived": history})

    # --- files --------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write a portable axes.npz (no pickled objects) to exactly `path`, atomically (a
        temporary file renamed into place); returns the path."""
        arrays = {
            "format": np.array(FILE_FORMAT),
            "directions": np.asarray(self.directions, np.float32),
            "names": np.array(self.names, dtype=np.str_),
            "method": np.array(self.method),
            "metadata": np.array(_to_json(self.metadata, "metadata")),
            "diagnostics": np.array(_to_json(self.diagnostics, "diagnostics")),
        }
        return write_npz(path, **arrays)

    @classmethod
    def load(cls, path: str | Path, latent_dim: int | None = None,
             generator: str = "the generator") -> Axes:
        """Read an axes.npz written by `save`; with `latent_dim`, also check the latent size."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as f:
                data = {k: f[k] for k in f.files}
        except ValueError as e:                     # e.g. an object array (would need pickle)
            raise ValueError(f"{path}: not a portable axes file: {e}") from None
        except (OSError, EOFError) as e:
            if isinstance(e, FileNotFoundError):
                raise
            raise ValueError(f"{path}: not a readable .npz file: {e}") from None
        missing = [k for k in ("directions", "names", "method", "metadata", "diagnostics")
                   if k not in data]
        if missing:
            raise ValueError(f"{path}: not an axes file: missing key(s) {missing}")
        fmt = str(data["format"]) if "format" in data else FILE_FORMAT
        if fmt != FILE_FORMAT:
            raise ValueError(f"{path}: unsupported axes file format {fmt!r} (this version reads "
                             f"{FILE_FORMAT!r})")
        if data["names"].dtype.kind != "U" or data["names"].ndim != 1:
            raise ValueError(f"{path}: 'names' must be a 1-D array of strings, got dtype "
                             f"{data['names'].dtype} and shape {data['names'].shape}")
        try:
            metadata = json.loads(str(data["metadata"]))
            diagnostics = json.loads(str(data["diagnostics"]))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: metadata/diagnostics are not valid JSON: {e}") from None
        try:
            axes = cls(data["directions"], tuple(str(n) for n in data["names"]),
                       method=str(data["method"]), diagnostics=diagnostics, metadata=metadata)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None
        if latent_dim is not None:
            axes.check_latent_dim(latent_dim, generator)
        return axes

    def __repr__(self) -> str:
        return (f"Axes(latent_dim={self.latent_dim}, names={list(self.names)}, "
                f"method={self.method!r})")


def orthogonal_to_others(axes: Axes, names: Sequence[str] | None = None,
                         strict: bool = True) -> np.ndarray:
    """[d, len(names)] float32: each axis of `names` (default: all) with every OTHER axis
    locked (`locked_directions` in float64, the others in index order): its projection on
    their span removed, re-normalised. Other axes that repeat or depend on earlier ones add
    nothing to the span and are fine. An axis inside that span raises ValueError, or with
    `strict=False` leaves its column NaN."""
    names = tuple(axes.names if names is None else names)
    d = np.asarray(axes.directions, np.float64)
    out = np.full((d.shape[0], len(names)), np.nan, np.float32)
    for j, a in enumerate(names):
        i = axes.index(a)
        cols = [c for c in range(d.shape[1]) if c != i] + [i]
        moved, ok = locked_directions(d[:, cols], np.arange(len(cols)) < len(cols) - 1)
        if ok[-1]:
            out[:, j] = moved[:, -1]
        elif strict:
            raise ValueError(f"axis {a!r} lies in the span of the other axes; nothing is left "
                             f"after locking them")
    return out


def _to_json(x: Any, what: str) -> str:
    try:
        return json.dumps(jsonable(x), allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as e:
        raise ValueError(f"Axes.save: {what} is not JSON-serialisable: {e}") from None


def load_axes(path: str | Path, latent_dim: int | None = None, **kwargs) -> Axes:
    """`Axes.load`: an axes file written by `Axes.save` (e.g. WORKDIR/axes.npz of a run)."""
    return Axes.load(path, latent_dim, **kwargs)
