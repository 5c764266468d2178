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

from tlgan_jax.models.pggan import PgganConfig, params_from_variables
from tlgan_jax.readers.safe_pickle import (CorruptPickleError, StateHolder,  # noqa: F401
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
# G_paper's keyword defaults (networks.py) for keys a pickle may omit.
_G_PAPER_DEFAULTS = dict(num_channels=1, label_size=0, fmap_base=8192, fmap_decay=1.0,
                         fmap_max=512, latent_size=None, normalize_latents=True,
                         use_wscale=True, use_pixelnorm=True, pixelnorm_epsilon=1e-8,
                         use_leakyrelu=True, dtype="float32", fused_scale=True)


@dataclasses.dataclass(frozen=True, eq=False)
class PgganNetwork:
    """One `tfutil.Network` of the pickle (Gs): its state and the derived G_paper config."""
    name: str
    static_kwargs: dict
    variables: dict          # TF name -> float32 np.ndarray ('lod' is 0-d)
    config: PgganConfig
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
    return _network(tflib_networks(obj, what, PgganPickleError, "tfutil.Network")[2].state, what)


def tflib_networks(obj, what: str, error: type, cls: str) -> tuple:
    """The unpickled (G, D, Gs) of a tflib Network pickle, each a `StateHolder`, else `error`."""
    if not (isinstance(obj, tuple) and len(obj) == 3
            and all(isinstance(o, StateHolder) for o in obj)):
        kind = (f"a {len(obj)}-tuple" if isinstance(obj, tuple) else type(obj).__name__)
        raise error(f"{what}: expected a 3-tuple (G, D, Gs) of {cls}, got {kind}")
    return obj


def tflib_variables(raw, what: str, error: type, net: str = "Gs") -> dict:
    """A Network state's `variables` [(name, value)] -> {name: float32 np.ndarray} (0-d for
    NumPy scalars); anything else (non-float, non-array, a repeated name) raises `error`."""
    if not isinstance(raw, (list, tuple)):
        raise error(f"{what}: {net} variables must be a list of (name, array)")
    variables = {}
    for item in raw:
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)):
            raise error(f"{what}: {net} variables must be (name, array) pairs")
        name, value = item
        arr = np.asarray(value) if isinstance(value, (np.ndarray, np.generic)) else None
        if arr is None or arr.dtype.kind != "f":
            raise error(f"{what}: variable {name!r} is not a floating-point array")
        if name in variables:
            raise error(f"{what}: {net} variable {name!r} appears twice")
        variables[name] = arr.astype(np.float32)
    return variables


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
    variables = tflib_variables(state["variables"], what, PgganPickleError)
    config = config_from_state(kwargs, variables, what)
    try:
        params_from_variables(variables, config)  # checks every name and shape
    except ValueError as e:
        raise PgganPickleError(f"{what}: {e}") from None
    return PgganNetwork(name=str(state["name"]), static_kwargs=dict(kwargs),
                        variables=variables, config=config,
                        build_func_name=state["build_func_name"], version=state.get("version"))


def config_from_state(kwargs: dict, variables: dict, what: str = "pg-GAN pickle") -> PgganConfig:
    """G_paper config from static_kwargs (defaults where absent) and the variable shapes."""
    kw = {**_G_PAPER_DEFAULTS, **kwargs}
    if kw["label_size"]:
        raise PgganPickleError(f"{what}: conditional pg-GAN (label_size={kw['label_size']}) is not "
                               f"supported; only unconditional networks (label_size 0, e.g. "
                               f"CelebA-HQ) are")
    if str(kw["dtype"]) != "float32":
        raise PgganPickleError(f"{what}: only dtype float32 networks are supported, got "
                               f"{kw['dtype']!r}")
    for name in ("lod", "4x4/Dense/weight"):
        if name not in variables:
            raise PgganPickleError(f"{what}: Gs is missing the variable {name!r}")
    lod = variables["lod"]
    if lod.shape != ():
        raise PgganPickleError(f"{what}: variable 'lod' must be a scalar, got shape {lod.shape}")
    fused = any(n.endswith("/Conv0_up/weight") for n in variables)
    if "fused_scale" in kwargs and bool(kwargs["fused_scale"]) != fused:
        raise PgganPickleError(f"{what}: static_kwargs say fused_scale={kwargs['fused_scale']} "
                               f"but the variables {'have' if fused else 'lack'} Conv0_up layers")
    latent = variables["4x4/Dense/weight"].shape[0]
    if kw["latent_size"] is not None and int(kw["latent_size"]) != latent:
        raise PgganPickleError(f"{what}: latent_size {kw['latent_size']} does not match the "
                               f"Dense weight's {latent} rows")
    num_channels = kw["num_channels"]
    if "ToRGB_lod0/bias" in variables:
        num_channels = variables["ToRGB_lod0/bias"].shape[0]
    try:
        return PgganConfig(
            resolution=int(kw["resolution"]) if "resolution" in kw else _resolution(variables),
            num_channels=int(num_channels), latent_size=int(latent),
            fmap_base=int(kw["fmap_base"]), fmap_decay=float(kw["fmap_decay"]),
            fmap_max=int(kw["fmap_max"]), normalize_latents=bool(kw["normalize_latents"]),
            use_wscale=bool(kw["use_wscale"]), use_pixelnorm=bool(kw["use_pixelnorm"]),
            use_leakyrelu=bool(kw["use_leakyrelu"]),
            pixelnorm_epsilon=float(kw["pixelnorm_epsilon"]), fused_scale=fused,
            lod=float(lod))
    except (TypeError, ValueError) as e:
        raise PgganPickleError(f"{what}: invalid G_paper settings: {e}") from None


def _resolution(variables: dict) -> int:
    res = [int(n.split("x")[0]) for n in variables if n[0].isdigit() and "x" in n.split("/")[0]]
    return max(res, default=4)
