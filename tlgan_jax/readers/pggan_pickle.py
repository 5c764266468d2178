"""NVIDIA's official pg-GAN pickle (`karras2018iclr-*.pkl`) read without TensorFlow.

The file is a pickled 3-tuple (G, D, Gs) of `tfutil.Network`; each pickles its state dict
{version, name, static_kwargs, build_module_src, build_func_name, variables=[(name, array)]}.
It is unpickled through an allow-list (`safe_pickle.restricted_loads`): `tfutil.Network`
becomes an inert `StateHolder`, arrays come from safe_pickle's NumPy wrappers (plain numeric
dtypes, sizes checked against their bytes); any other global is refused before it is imported.
`build_module_src` is kept as text and never executed. Only Gs (the averaged generator) is
used; its G_paper config is derived from static_kwargs (G_paper's defaults where absent, each
type-checked) and checked against the variable shapes. The variables' bytes may not exceed the
file's (no array counted twice), and the resolution is at most `MAX_RESOLUTION`.
"""
from __future__ import annotations

import dataclasses
import os
import re
import stat
import types

import numpy as np

from tlgan_jax.models.pggan import PgganConfig, params_from_variables
from tlgan_jax.readers.safe_pickle import (NUMPY_GLOBALS, CorruptPickleError,  # noqa: F401
                                           StateHolder, UnsafePickleError, as_array, describe,
                                           restricted_loads)


class PgganPickleError(ValueError):
    """The pickle is well-formed but is not an official pg-GAN G_paper network."""


_ALLOWED = types.MappingProxyType({**NUMPY_GLOBALS, ("tfutil", "Network"): StateHolder})
# Larger than any published pg-GAN (1024); a file cannot ask for renders of unbounded size.
MAX_RESOLUTION = 8192

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
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        raise PgganPickleError(f"{os.fspath(path)}: cannot read the pg-GAN pickle "
                               f"({e.strerror or e})") from None
    if not stat.S_ISREG(mode):
        raise PgganPickleError(f"{os.fspath(path)} is not a regular file; give the path of the "
                               f"pg-GAN .pkl file itself")
    with open(path, "rb") as f:
        data = f.read()
    return parse_pggan_pickle(data, what=os.fspath(path))


def parse_pggan_pickle(data: bytes, what: str = "pg-GAN pickle") -> PgganNetwork:
    """`load_pggan_pickle` on bytes. Raises UnsafePickleError (a global or value refused;
    nothing ran), CorruptPickleError (truncated, or sizes its bytes do not hold) or
    PgganPickleError (wrong structure); each names `what`."""
    obj = restricted_loads(data, _ALLOWED, what=what)
    if not (isinstance(obj, tuple) and len(obj) == 3
            and all(isinstance(o, StateHolder) for o in obj)):
        kind = (f"a {len(obj)}-tuple" if isinstance(obj, tuple) else type(obj).__name__)
        raise PgganPickleError(f"{what}: expected a 3-tuple (G, D, Gs) of tfutil.Network, "
                               f"got {kind}")
    return _network(obj[2].state, what, max_bytes=len(data))


def _network(state, what: str, max_bytes: int) -> PgganNetwork:
    if not isinstance(state, dict) or any(k not in state for k in _STATE_KEYS):
        keys = (sorted(k for k in state if isinstance(k, str))[:16] if isinstance(state, dict)
                else describe(state))
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
    variables = {}
    raw = state["variables"]
    if not isinstance(raw, (list, tuple)):
        raise PgganPickleError(f"{what}: Gs variables must be a list of (name, array)")
    total = 0
    for item in raw:
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)):
            raise PgganPickleError(f"{what}: Gs variables must be (name, array) pairs")
        name, value = item
        arr = as_array(value)
        if arr is None or arr.dtype.kind != "f":
            raise PgganPickleError(f"{what}: variable {describe(name)} is not a floating-point "
                                   f"array")
        total += arr.nbytes
        if total > max_bytes:
            raise PgganPickleError(f"{what}: the variables take more bytes than the file holds "
                                   f"(an array is used more than once), so the file is corrupt "
                                   f"or hostile")
        variables[name] = arr.astype(np.float32, copy=False)
    config = config_from_state(kwargs, variables, what)
    try:
        params_from_variables(variables, config)  # checks every name and shape
    except (ValueError, TypeError, OverflowError, ZeroDivisionError) as e:
        raise PgganPickleError(f"{what}: {e}") from None
    version = state.get("version")
    return PgganNetwork(name=state["name"], static_kwargs=dict(kwargs),
                        variables=variables, config=config, build_func_name="G_paper",
                        version=version if type(version) is int else None)


# The type of each G_paper keyword this reader uses (a value of another type is refused).
_KINDS = dict(num_channels=int, resolution=int, label_size=int, fmap_base=int,
              fmap_decay=float, fmap_max=int, latent_size=int, normalize_latents=bool,
              use_wscale=bool, use_pixelnorm=bool, pixelnorm_epsilon=float, use_leakyrelu=bool,
              dtype=str, fused_scale=bool)


def _setting(kw: dict, key: str, what: str):
    """static_kwargs[key] (or G_paper's default) checked against its type in `_KINDS`."""
    v, kind = kw[key], _KINDS[key]
    if key == "latent_size" and v is None:
        return None
    if kind is int:
        ok = type(v) is int
    elif kind is float:
        ok = type(v) in (int, float)
    elif kind is bool:
        ok = type(v) is bool or (type(v) is int and v in (0, 1))
    else:
        ok = type(v) is str
    if not ok:
        raise PgganPickleError(f"{what}: static_kwargs {key}={describe(v)} is not "
                               f"a{'n' if kind is int else ''} {kind.__name__}")
    return kind(v)


def config_from_state(kwargs: dict, variables: dict, what: str = "pg-GAN pickle") -> PgganConfig:
    """G_paper config from static_kwargs (defaults where absent) and the variable shapes."""
    kw = {**_G_PAPER_DEFAULTS, **kwargs}
    label_size = _setting(kw, "label_size", what)
    if label_size:
        raise PgganPickleError(f"{what}: conditional pg-GAN (label_size={label_size}) is not "
                               f"supported; only unconditional networks (label_size 0, e.g. "
                               f"CelebA-HQ) are")
    if _setting(kw, "dtype", what) != "float32":
        raise PgganPickleError(f"{what}: only dtype float32 networks are supported, got "
                               f"{describe(kw['dtype'])}")
    for name in ("lod", "4x4/Dense/weight"):
        if name not in variables:
            raise PgganPickleError(f"{what}: Gs is missing the variable {name!r}")
    lod = variables["lod"]
    if lod.shape != ():
        raise PgganPickleError(f"{what}: variable 'lod' must be a scalar, got shape {lod.shape}")
    dense = variables["4x4/Dense/weight"]
    if dense.ndim != 2:
        raise PgganPickleError(f"{what}: variable '4x4/Dense/weight' must be 2-D, got shape "
                               f"{dense.shape}")
    fused = any(n.endswith("/Conv0_up/weight") for n in variables)
    if "fused_scale" in kwargs and _setting(kw, "fused_scale", what) != fused:
        raise PgganPickleError(f"{what}: static_kwargs say fused_scale={not fused} but the "
                               f"variables {'have' if fused else 'lack'} Conv0_up layers")
    latent = dense.shape[0]
    latent_size = _setting(kw, "latent_size", what)
    if latent_size is not None and latent_size != latent:
        raise PgganPickleError(f"{what}: latent_size {latent_size} does not match the "
                               f"Dense weight's {latent} rows")
    num_channels = _setting(kw, "num_channels", what)
    if "ToRGB_lod0/bias" in variables:
        bias = variables["ToRGB_lod0/bias"]
        if bias.ndim != 1:
            raise PgganPickleError(f"{what}: variable 'ToRGB_lod0/bias' must be 1-D, got shape "
                                   f"{bias.shape}")
        num_channels = bias.shape[0]
    resolution = (_setting(kw, "resolution", what) if "resolution" in kwargs
                  else _resolution(variables))
    if not 4 <= resolution <= MAX_RESOLUTION:
        raise PgganPickleError(f"{what}: resolution {describe(resolution)} is outside "
                               f"4..{MAX_RESOLUTION}")
    try:
        return PgganConfig(
            resolution=resolution, num_channels=num_channels, latent_size=latent,
            fmap_base=_setting(kw, "fmap_base", what),
            fmap_decay=_setting(kw, "fmap_decay", what),
            fmap_max=_setting(kw, "fmap_max", what),
            normalize_latents=_setting(kw, "normalize_latents", what),
            use_wscale=_setting(kw, "use_wscale", what),
            use_pixelnorm=_setting(kw, "use_pixelnorm", what),
            use_leakyrelu=_setting(kw, "use_leakyrelu", what),
            pixelnorm_epsilon=_setting(kw, "pixelnorm_epsilon", what), fused_scale=fused,
            lod=float(lod))
    except (TypeError, ValueError, OverflowError) as e:
        raise PgganPickleError(f"{what}: invalid G_paper settings: {e}") from None


def _resolution(variables: dict) -> int:
    """The largest 'RxR/...' scope among the variable names (4 if none)."""
    res = [int(m.group(1)) for n in variables
           if (m := re.fullmatch(r"([0-9]{1,5})x\1", n.split("/")[0]))]
    return max(res, default=4)
