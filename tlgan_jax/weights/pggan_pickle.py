"""NVIDIA's official pg-GAN pickle (`karras2018iclr-*.pkl`) read without TensorFlow.

The file is a pickled 3-tuple (G, D, Gs) of `tfutil.Network`; each pickles its state dict
{version, name, static_kwargs, build_module_src, build_func_name, variables=[(name, array)]}.
It is unpickled through an allow-list (`safe_pickle.restricted_loads`): `tfutil.Network`
becomes an inert `StateHolder`, arrays come from NumPy's `_reconstruct`; any other global
is refused before it is imported. `build_module_src` is kept as text and never executed.
Only Gs (the averaged generator) is used; its G_paper config is derived from static_kwargs
(G_paper's defaults where absent) and checked against the variable shapes.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np

from tlgan_jax.weights.safe_pickle import (CorruptPickleError, StateHolder,  # noqa: F401
                                           UnsafePickleError, restricted_loads)

try:  # NumPy 2
    from numpy._core import multiarray as _multiarray
except ImportError:  # pragma: no cover - NumPy 1
    from numpy.core import multiarray as _multiarray


class PgganPickleError(ValueError):
    """The pickle is well-formed but is not an official pg-GAN G_paper network."""


_ALLOWED = {("tfutil", "Network"): StateHolder,
            ("numpy", "ndarray"): np.ndarray,
            ("numpy", "dtype"): np.dtype}
for _mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _ALLOWED[(_mod, "_reconstruct")] = _multiarray._reconstruct
    _ALLOWED[(_mod, "scalar")] = _multiarray.scalar

_STATE_KEYS = ("name", "static_kwargs", "build_func_name", "variables")



@dataclasses.dataclass(frozen=True, eq=False)
class PgganNetwork:
    """One `tfutil.Network` of the pickle (Gs): its state. The G_paper config and the
    parameters are derived from it by `tlgan_jax.generators.pggan.from_network`."""
    name: str
    static_kwargs: dict
    variables: dict          # TF name -> float32 np.ndarray ('lod' is 0-d)
    what: str = "pg-GAN pickle"   # where it came from, for error messages
    build_func_name: str = "G_paper"
    version: int | None = None


def load_pggan_pickle(path: str | os.PathLike) -> PgganNetwork:
    """Read Gs from NVIDIA's pg-GAN pickle at `path` (no TensorFlow, no code from the file)."""
    with open(path, "rb") as f:
        data = f.read()
    return parse_pggan_pickle(data, what=os.fspath(path))


def parse_pggan_pickle(data: bytes, what: str = "pg-GAN pickle") -> PgganNetwork:
    """`load_pggan_pickle` on bytes. Raises UnsafePickleError (a global off the allow-list;
    nothing ran), CorruptPickleError (truncated) or PgganPickleError (wrong structure)."""
    obj = restricted_loads(data, _ALLOWED, what=what)
    if not (isinstance(obj, tuple) and len(obj) == 3
            and all(isinstance(o, StateHolder) for o in obj)):
        kind = (f"a {len(obj)}-tuple" if isinstance(obj, tuple) else type(obj).__name__)
        raise PgganPickleError(f"{what}: expected a 3-tuple (G, D, Gs) of tfutil.Network, "
                               f"got {kind}")
    return _network(obj[2].state, what)


def _network(state, what: str) -> PgganNetwork:
    if not isinstance(state, dict) or any(k not in state for k in _STATE_KEYS):
        keys = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise PgganPickleError(f"{what}: Gs is not a tfutil.Network state (need keys "
                               f"{list(_STATE_KEYS)}, got {keys})")
    if state["build_func_name"] != "G_paper":
        raise PgganPickleError(f"{what}: Gs is built by {state['build_func_name']!r}; only "
                               f"G_paper (the official pg-GAN generator) is supported")
    kwargs = state["static_kwargs"]
    if not isinstance(kwargs, dict):
        raise PgganPickleError(f"{what}: static_kwargs is not a dict")
    variables = {}
    raw = state["variables"]
    if not isinstance(raw, (list, tuple)):
        raise PgganPickleError(f"{what}: Gs variables must be a list of (name, array)")
    for item in raw:
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)):
            raise PgganPickleError(f"{what}: Gs variables must be (name, array) pairs")
        name, value = item
        arr = np.asarray(value) if isinstance(value, (np.ndarray, np.generic)) else None
        if arr is None or arr.dtype.kind != "f":
            raise PgganPickleError(f"{what}: variable {name!r} is not a floating-point array")
        variables[name] = arr.astype(np.float32)
    return PgganNetwork(name=str(state["name"]), static_kwargs=dict(kwargs),
                        variables=variables, what=what,
                        build_func_name=state["build_func_name"], version=state.get("version"))
