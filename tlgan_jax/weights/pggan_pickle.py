"""NVIDIA's official pg-GAN pickle (`karras2018iclr-*.pkl`) read without TensorFlow.

The file is a pickled 3-tuple (G, D, Gs) of `tfutil.Network`; each pickles its state dict
{version, name, static_kwargs, build_module_src, build_func_name, variables=[(name, array)]}.
It is unpickled through an allow-list (`safe_pickle.restricted_loads`): `tfutil.Network`
becomes an inert `StateHolder`, arrays come from safe_pickle's NumPy wrappers (plain numeric
dtypes, sizes checked against their bytes); any other global is refused before it is imported.
`build_module_src` is kept as text and never executed. Only Gs (the averaged generator) is
kept; the variables' bytes may not exceed the file's (no array counted twice). Its G_paper
config is derived and checked by `tlgan_jax.generators.pggan.from_network`.
"""
from __future__ import annotations

import dataclasses
import os
import types

import numpy as np

from tlgan_jax.weights.safe_pickle import (  # noqa: F401
    NUMPY_GLOBALS,
    CorruptPickleError,
    StateHolder,
    UnsafePickleError,
    as_array,
    describe,
    require_regular_file,
    restricted_loads,
    str_keys,
)


class PgganPickleError(ValueError):
    """The pickle is well-formed but is not an official pg-GAN G_paper network."""


_ALLOWED = types.MappingProxyType({**NUMPY_GLOBALS, ("tfutil", "Network"): StateHolder})

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
    require_regular_file(path, PgganPickleError, "pg-GAN pickle")
    with open(path, "rb") as f:
        data = f.read()
    return parse_pggan_pickle(data, what=os.fspath(path))


def parse_pggan_pickle(data: bytes, what: str = "pg-GAN pickle") -> PgganNetwork:
    """`load_pggan_pickle` on bytes. Raises UnsafePickleError (a global or value refused;
    nothing ran), CorruptPickleError (truncated, or sizes its bytes do not hold) or
    PgganPickleError (wrong structure); each names `what`."""
    obj = restricted_loads(data, _ALLOWED, what=what)
    gs = tflib_networks(obj, what, PgganPickleError, "tfutil.Network")[2]
    return _network(gs.state, what, max_bytes=len(data))


def tflib_networks(obj, what: str, error: type, cls: str) -> tuple:
    """The unpickled (G, D, Gs) of a tflib Network pickle, each a `StateHolder`, else `error`."""
    if not (isinstance(obj, tuple) and len(obj) == 3
            and all(isinstance(o, StateHolder) for o in obj)):
        kind = (f"a {len(obj)}-tuple" if isinstance(obj, tuple) else type(obj).__name__)
        raise error(f"{what}: expected a 3-tuple (G, D, Gs) of {cls}, got {kind}")
    return obj


def tflib_variables(raw, what: str, error: type, *, max_bytes: int, net: str = "Gs") -> dict:
    """A Network state's `variables` [(name, array)] -> {name: float32 np.ndarray} (0-d for
    NumPy scalars). Raises `error` for anything else (non-float, non-array, a repeated name)
    and when the arrays take more than `max_bytes` (the file's size: no array counted twice)."""
    if not isinstance(raw, (list, tuple)):
        raise error(f"{what}: {net} variables must be a list of (name, array)")
    variables = {}
    total = 0
    for item in raw:
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)):
            raise error(f"{what}: {net} variables must be (name, array) pairs")
        name, value = item
        arr = as_array(value)
        if arr is None or arr.dtype.kind != "f":
            raise error(f"{what}: variable {describe(name)} is not a floating-point array")
        if name in variables:
            raise error(f"{what}: {net} variable {describe(name)} appears twice")
        total += arr.nbytes
        if total > max_bytes:
            raise error(f"{what}: the {net} variables take more bytes than the file holds (an "
                        f"array is used more than once), so the file is corrupt or hostile")
        variables[name] = arr.astype(np.float32, copy=False)
    return variables


def _network(state, what: str, max_bytes: int) -> PgganNetwork:
    if not isinstance(state, dict) or any(k not in state for k in _STATE_KEYS):
        keys = str_keys(state) if isinstance(state, dict) else describe(state)
        raise PgganPickleError(f"{what}: Gs is not a tfutil.Network state (need keys "
                               f"{list(_STATE_KEYS)}, got {keys})")
    if state["build_func_name"] != "G_paper":
        raise PgganPickleError(f"{what}: Gs is built by {describe(state['build_func_name'])}; "
                               f"only G_paper (the official pg-GAN generator) is supported")
    if not isinstance(state["name"], str):
        raise PgganPickleError(f"{what}: Gs's name is {describe(state['name'])}, not a string")
    kwargs = state["static_kwargs"]
    if not isinstance(kwargs, dict):
        raise PgganPickleError(f"{what}: static_kwargs is not a dict")
    variables = tflib_variables(state["variables"], what, PgganPickleError, max_bytes=max_bytes)
    version = state.get("version")
    return PgganNetwork(name=state["name"], static_kwargs=dict(kwargs),
                        variables=variables, what=what, build_func_name="G_paper",
                        version=version if type(version) is int else None)
