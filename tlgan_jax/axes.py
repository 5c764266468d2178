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
Files (`Axes.save`/`Axes.load`): `axes.npz` written with np.savez (to a temporary name, then
renamed): `directions` [d, k] float32, `names` [k] unicode, `method`, `format`, and
`metadata` / `diagnostics` as JSON objects in strings (non-finite numbers stored as null).
`Axes.load` reads only these members, each within a size limit (`AXES_FILE_LIMITS`, checked
against the zip directory before reading) and never a pickled object; anything else in the
file is ignored, and every problem is a ValueError naming the file.
The peer tools' files: InterFaceGAN boundaries (`.npy` [1, d], one per attribute) and TL-GAN's
feature-direction pickle, read and written by `Axes.from_interfacegan` / `save_interfacegan`
and `Axes.from_tlgan` / `save_tlgan` (tlgan_jax.weights.peer_axes).
"""
from __future__ import annotations

import collections
import dataclasses
import json
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence, cast

import jax
import jax.numpy as jnp
import numpy as np

from tlgan_jax.extractors import BUILTIN_EXTRACTORS, EMBEDDED_EXTRACTORS
from tlgan_jax.files import NpzError, jsonable, read_npz, write_npz
from tlgan_jax.generators import BUILTIN_GENERATORS, EMBEDDED_GENERATOR
from tlgan_jax.weights.peer_axes import (
    read_interfacegan_boundary,
    read_tlgan_directions,
    write_interfacegan_boundary,
    write_tlgan_directions,
)

FILE_FORMAT = "tlgan_jax.axes/1"
# The most bytes `Axes.load` reads per member (d·k·4 bytes of directions: 16 MiB is e.g.
# d = 512 with 8192 axes); a file claiming more is refused before anything is allocated.
AXES_FILE_LIMITS = {"directions": 16 << 20, "names": 4 << 20, "method": 64 << 10,
                    "format": 64 << 10, "metadata": 4 << 20, "diagnostics": 16 << 20}
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
        dupes = sorted(n for n, c in collections.Counter(names).items() if c > 1)
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
        dupes = sorted(n for n, c in collections.Counter(names).items() if c > 1)
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

    @property
    def latent_space(self) -> str:
        """The space the directions live in: metadata 'latent_space' ('z' when absent)."""
        return str(self.metadata.get("latent_space", "z"))

    def check_generator(self, gen) -> None:
        """Raise ValueError unless these axes fit `gen` (a tlgan_jax Generator, possibly a
        w / w+ view): the same latent space (applying W axes to z, or z axes to w, is refused:
        the spaces differ even where their sizes agree) and latent size."""
        space = getattr(gen, "latent_space", "z")
        if self.latent_space != space:
            offers = getattr(gen, "spaces", lambda: ("z",))()
            hint = (f"use gen.in_space({self.latent_space!r}) and latents from "
                    f"gen.encode(z, {self.latent_space!r})" if self.latent_space in offers
                    else f"generator {gen.name} has no {self.latent_space} space")
            raise ValueError(f"axes are in {self.latent_space} space but generator {gen.name} "
                             f"takes {space} latents; {hint}")
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
            data = read_npz(path, AXES_FILE_LIMITS, what="an axes file (axes.npz)",
                            required=("directions", "names", "method", "metadata",
                                      "diagnostics"))
        except NpzError as e:
            lead = "not a portable axes file" if e.pickled else "not an axes file"
            reason = e.reason.removeprefix("not an axes file (axes.npz): ")
            raise ValueError(f"{path}: {lead}: {reason}; give an axes.npz written by "
                             f"Axes.save or experiments/discover_axes.py") from None
        fmt = _text(data["format"], path, "format") if "format" in data else FILE_FORMAT
        if fmt != FILE_FORMAT:
            raise ValueError(f"{path}: unsupported axes file format {fmt!r} (this version reads "
                             f"{FILE_FORMAT!r})")
        if data["names"].dtype.kind != "U" or data["names"].ndim != 1:
            raise ValueError(f"{path}: 'names' must be a 1-D array of strings, got dtype "
                             f"{data['names'].dtype} and shape {data['names'].shape}")
        method = _text(data["method"], path, "method")
        metadata = _json_object(data["metadata"], path, "metadata")
        diagnostics = _json_object(data["diagnostics"], path, "diagnostics")
        bad = sorted(k for k, v in diagnostics.items() if not isinstance(v, dict))
        if bad:
            raise ValueError(f"{path}: 'diagnostics' must map each axis name to an object of "
                             f"figures; not objects: {bad[:5]}")
        try:
            axes = cls(cast(jax.Array, data["directions"]),   # checked in __post_init__
                       tuple(str(n) for n in data["names"]),
                       method=method, diagnostics=diagnostics, metadata=metadata)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None
        if latent_dim is not None:
            axes.check_latent_dim(latent_dim, generator)
        return axes

    # --- the peer tools' files ---------------------------------------------------------
    @classmethod
    def from_interfacegan(cls, files, latent_space: str = "z") -> Axes:
        """Axes from InterFaceGAN boundary files (`.npy`, float32 [1, d], one attribute
        each): `files` a {name: path} mapping, or paths named by their file name without
        '_boundary.npy' (e.g. stylegan_ffhq_age_w_boundary.npy -> 'stylegan_ffhq_age_w').
        latent_space: the space they were trained in ('z'; 'w' / 'w+' for InterFaceGAN's
        StyleGAN 'w' / 'wp' boundaries, whose [num_layers, 512] rows are flattened as ours)."""
        if isinstance(files, (str, Path)):
            files = [files]
        if not isinstance(files, dict):
            files = {_boundary_name(p): p for p in files}
        if not files:
            raise ValueError("from_interfacegan: no boundary files given")
        vectors = [read_interfacegan_boundary(p) for p in files.values()]
        sizes = sorted({v.shape[0] for v in vectors})
        if len(sizes) > 1:
            raise ValueError(f"from_interfacegan: the boundaries have different sizes {sizes}")
        return cls.from_vectors(np.stack(vectors, 1), tuple(files), method="interfacegan",
                                metadata={"latent_space": latent_space, "source": "interfacegan",
                                          "files": [str(p) for p in files.values()]})

    def save_interfacegan(self, directory: str | Path, prefix: str = "") -> list[Path]:
        """One InterFaceGAN boundary file per axis: DIR/{prefix}{name}_boundary.npy, float32
        [1, d] (np.save, as InterFaceGAN's train_boundary output). Returns the paths."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        safe = ["".join(c if c.isalnum() or c in "-_." else "_" for c in n) for n in self.names]
        if len(set(safe)) != len(safe):
            raise ValueError(f"save_interfacegan: names {list(self.names)} collide as file names")
        return [write_interfacegan_boundary(directory / f"{prefix}{s}_boundary.npy", self[n])
                for n, s in zip(self.names, safe)]

    @classmethod
    def from_tlgan(cls, path: str | Path) -> Axes:
        """Axes from TL-GAN's feature_direction_*.pkl ({'direction': [d, k], 'name': [k]};
        read through an allow-list of NumPy globals only). TL-GAN's axes live in z."""
        directions, names = read_tlgan_directions(path)
        try:
            return cls.from_vectors(directions, tuple(names), method="tlgan",
                                    metadata={"latent_space": "z", "source": "tlgan",
                                              "files": [str(path)]})
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None

    def save_tlgan(self, path: str | Path) -> Path:
        """Write TL-GAN's feature_direction pickle ({'direction': [d, k] float64, 'name':
        [k]}, readable by TL-GAN's own scripts with any NumPy). z axes only: TL-GAN has no
        other space."""
        if self.latent_space != "z":
            raise ValueError(f"save_tlgan: TL-GAN's directions live in z; these axes are in "
                             f"{self.latent_space} (use save_interfacegan or save)")
        return write_tlgan_directions(path, np.asarray(self.directions), self.names)

    def __repr__(self) -> str:
        return (f"Axes(latent_dim={self.latent_dim}, names={list(self.names)}, "
                f"method={self.method!r})")


def _boundary_name(path) -> str:
    name = Path(path).name
    for suffix in (".npy", "_boundary"):
        name = name[:-len(suffix)] if name.endswith(suffix) else name
    return name


def orthogonal_to_others(axes: Axes, names: Sequence[str] | None = None,
                         strict: bool = True,
                         exceptions: Mapping[str, Sequence[str]] | None = None) -> np.ndarray:
    """[d, len(names)] float32: each axis of `names` (default: all) with every OTHER axis
    locked (`locked_directions` in float64, the others in index order): its projection on
    their span removed, re-normalised. Other axes that repeat or depend on earlier ones add
    nothing to the span and are fine. An axis inside that span raises ValueError, or with
    `strict=False` leaves its column NaN. exceptions: axis -> axes it is NOT locked against
    (e.g. a combined attribute and its sources, `combine.lock_exceptions`)."""
    names = tuple(axes.names if names is None else names)
    d = np.asarray(axes.directions, np.float64)
    out = np.full((d.shape[0], len(names)), np.nan, np.float32)
    for j, a in enumerate(names):
        i = axes.index(a)
        free = set((exceptions or {}).get(a, ()))
        cols = [c for c in range(d.shape[1]) if c != i and axes.names[c] not in free] + [i]
        moved, ok = locked_directions(d[:, cols], np.arange(len(cols)) < len(cols) - 1)
        if ok[-1]:
            out[:, j] = moved[:, -1]
        elif strict:
            raise ValueError(f"axis {a!r} lies in the span of the other axes; nothing is left "
                             f"after locking them")
    return out


def _text(a: np.ndarray, path: Path, key: str) -> str:
    if a.dtype.kind != "U" or a.ndim != 0:
        raise ValueError(f"{path}: '{key}' must be a string, got dtype {a.dtype} and shape "
                         f"{a.shape}; not an axes file written by Axes.save")
    return str(a)


def _json_object(a: np.ndarray, path: Path, key: str) -> dict:
    """A JSON object stored as a 0-d string; ValueError naming the file otherwise."""
    try:
        value = json.loads(_text(a, path, key))
    except ValueError as e:          # JSONDecodeError, or an integer of too many digits
        raise ValueError(f"{path}: {key} is not valid JSON: {e}") from None
    except RecursionError:
        raise ValueError(f"{path}: {key} is nested too deeply") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path}: {key} must be a JSON object ({{...}}), got "
                         f"{type(value).__name__}")
    return value


def _to_json(x: Any, what: str) -> str:
    try:
        return json.dumps(jsonable(x), allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as e:
        raise ValueError(f"Axes.save: {what} is not JSON-serialisable: {e}") from None


def load_axes(path: str | Path, latent_dim: int | None = None, **kwargs) -> Axes:
    """`Axes.load`: an axes file written by `Axes.save` (e.g. WORKDIR/axes.npz of a run)."""
    return Axes.load(path, latent_dim, **kwargs)


def models_named_by_axes(metadata: dict, source: str | Path, generator: str | None = None,
                         extractors: Sequence[str] | None = None, *,
                         flags: tuple[str, str] = ("--generator", "--extractors")
                         ) -> tuple[str, list[str]]:
    """(generator name, extractor names) to use with axes whose `metadata` was read from the
    file `source`: the user's `generator` / `extractors` when given, else those the metadata
    names, else the embedded default. An axes file must not decide which files are opened:
    a model it names that reads a file (`pggan:PATH`, `celeba40:DIR`) is refused with a
    ValueError unless the user names it too (`flags` say how, in the message)."""
    if generator is None and "generator" in metadata:
        named = metadata["generator"]
        if not isinstance(named, str) or not named:
            raise ValueError(f"{source}: metadata field 'generator' must be a generator name, "
                             f"got {named!r}; pass {flags[0]} NAME")
        if named not in BUILTIN_GENERATORS:
            raise ValueError(f"{source}: the axes name generator {named!r}, not one of the "
                             f"built-in {list(BUILTIN_GENERATORS)}; an axes file does not "
                             f"choose which files are opened: pass {flags[0]} NAME yourself "
                             f"({flags[0]} {named} if you trust that file)")
        generator = named
    if extractors is None and "extractors" in metadata:
        named = metadata["extractors"]
        if not isinstance(named, list) or not all(isinstance(e, str) and e for e in named):
            raise ValueError(f"{source}: metadata field 'extractors' must be a list of "
                             f"extractor names, got {named!r}; pass {flags[1]} A,B")
        files = [e for e in named if e not in BUILTIN_EXTRACTORS]
        if files:
            raise ValueError(f"{source}: the axes name extractor(s) {files}, not among the "
                             f"built-in {list(BUILTIN_EXTRACTORS)}; an axes file does not "
                             f"choose which files are opened: pass {flags[1]} A,B yourself "
                             f"({flags[1]} {','.join(named)} if you trust those files)")
        extractors = named
    return generator or EMBEDDED_GENERATOR, list(extractors or EMBEDDED_EXTRACTORS)
