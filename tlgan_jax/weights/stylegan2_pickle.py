"""NVIDIA's official StyleGAN2 pickle (`stylegan2-*-config-f.pkl`, NVlabs/stylegan2) read
without TensorFlow.

The file is a pickled 3-tuple (G, D, Gs) of `dnnlib.tflib.network.Network`; each pickles its
state {version 4, name, static_kwargs, components, build_module_src, build_func_name,
variables=[(name, value)]}, and G/Gs nest their `mapping` and `synthesis` Networks in
`components`. It is unpickled through the pg-GAN reader's allow-list (the same NumPy entries)
with this Network class mapped to an inert `StateHolder`; any other global is refused before it
is imported, and `build_module_src` stays text, never executed. Only Gs is used.

Structure is checked here (names, build functions, version 4, components, variable lists);
the config is derived from the static_kwargs and every variable name and shape checked against
it by `tlgan_jax.generators.stylegan2.from_network` (weights code imports no model code).
"""
from __future__ import annotations

import dataclasses
import os
import stat
import types

from tlgan_jax.weights.pggan_pickle import tflib_networks, tflib_variables
from tlgan_jax.weights.safe_pickle import (  # noqa: F401
    NUMPY_GLOBALS,
    CorruptPickleError,
    StateHolder,
    UnsafePickleError,
    describe,
    restricted_loads,
    str_keys,
)

NETWORK_CLASS = ("dnnlib.tflib.network", "Network")


class StyleGAN2PickleError(ValueError):
    """The pickle is well-formed but is not an official StyleGAN2 G_main (skip) network."""


# The tflib pickles' one allow-list (NumPy entries shared with the pg-GAN reader), with
# dnnlib's Network class in place of pg-GAN's tfutil.Network.
_ALLOWED = types.MappingProxyType({**NUMPY_GLOBALS, NETWORK_CLASS: StateHolder})

_STATE_KEYS = ("version", "name", "static_kwargs", "components", "build_module_src",
               "build_func_name", "variables")


@dataclasses.dataclass(frozen=True, eq=False)
class StyleGAN2Network:
    """Gs of the pickle: the static_kwargs of Gs and of its two components, and all their
    variables, named 'dlatent_avg', 'lod', 'mapping/Dense0/weight', 'synthesis/4x4/Conv/weight',
    ... (float32, stored layouts). The config and params are derived from it by
    `tlgan_jax.generators.stylegan2.from_network`."""
    name: str
    static_kwargs: dict
    mapping_kwargs: dict
    synthesis_kwargs: dict
    variables: dict
    what: str = "StyleGAN2 pickle"     # where it came from, for error messages
    version: int = 4


_HINT = "pass the path of an official StyleGAN2 pickle, e.g. stylegan2-ffhq-config-f.pkl"


def _open_pickle(path: str):
    """The open file at `path`, or one OSError naming it (missing, unreadable, not regular)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):   # before open: a FIFO would block
            raise OSError(f"{path}: not a regular file; {_HINT}")
        f = open(path, "rb")
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such StyleGAN2 pickle; {_HINT}") from None
    except OSError as e:
        if e.args and str(e.args[0]).startswith(f"{path}: "):
            raise
        raise OSError(f"{path}: cannot open the StyleGAN2 pickle ({e.strerror or e}); "
                      f"{_HINT}") from None
    if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
        f.close()
        raise OSError(f"{path}: not a regular file; {_HINT}")
    return f


def check_stylegan2_file(path: str | os.PathLike) -> None:
    """Raise the OSError `load_stylegan2_pickle` would for a file it cannot open; reads
    nothing (flags are checked with it before any work)."""
    _open_pickle(os.fspath(path)).close()


def load_stylegan2_pickle(path: str | os.PathLike) -> StyleGAN2Network:
    """Read Gs from NVIDIA's StyleGAN2 pickle at `path` (no TensorFlow, no code from the file).
    A missing, unreadable or non-regular file (a directory, /dev/zero) raises one OSError
    naming it."""
    path = os.fspath(path)
    with _open_pickle(path) as f:
        try:
            data = f.read()
        except OSError as e:
            raise OSError(f"{path}: cannot read the StyleGAN2 pickle ({e.strerror or e}); "
                          f"{_HINT}") from None
    return parse_stylegan2_pickle(data, what=path)


def parse_stylegan2_pickle(data: bytes, what: str = "StyleGAN2 pickle") -> StyleGAN2Network:
    """`load_stylegan2_pickle` on bytes. Raises UnsafePickleError (a global off the allow-list;
    nothing ran), CorruptPickleError (truncated) or StyleGAN2PickleError (wrong structure)."""
    obj = restricted_loads(data, _ALLOWED, what=what)
    gs = tflib_networks(obj, what, StyleGAN2PickleError, ".".join(NETWORK_CLASS))[2]
    gs = _state(gs, what, "Gs", "Gs", "G_main")
    comps = gs["components"]
    if not (isinstance(comps, dict) and set(comps) == {"mapping", "synthesis"}):
        keys = str_keys(comps) if isinstance(comps, dict) else describe(comps)
        raise StyleGAN2PickleError(f"{what}: Gs components must be 'mapping' and 'synthesis', "
                                   f"got {keys}")
    mapping = _state(comps["mapping"], what, "Gs mapping", "G_mapping", "G_mapping")
    synthesis = _state(comps["synthesis"], what, "Gs synthesis", "G_synthesis",
                       "G_synthesis_stylegan2")
    for net, st in (("Gs mapping", mapping), ("Gs synthesis", synthesis)):
        if not (isinstance(st["components"], dict) and not st["components"]):
            raise StyleGAN2PickleError(f"{what}: {net} must have no components")
    # the three variable lists share one budget: together no more bytes than the file holds
    budget = len(data)
    variables = tflib_variables(gs["variables"], what, StyleGAN2PickleError, max_bytes=budget,
                                net="Gs")
    budget -= sum(v.nbytes for v in variables.values())
    for prefix, st in (("mapping", mapping), ("synthesis", synthesis)):
        own = tflib_variables(st["variables"], what, StyleGAN2PickleError, max_bytes=budget,
                              net=f"Gs {prefix}")
        budget -= sum(v.nbytes for v in own.values())
        variables.update({f"{prefix}/{k}": v for k, v in own.items()})
    return StyleGAN2Network(name=gs["name"], static_kwargs=dict(gs["static_kwargs"]),
                            mapping_kwargs=dict(mapping["static_kwargs"]),
                            synthesis_kwargs=dict(synthesis["static_kwargs"]),
                            variables=variables, what=what, version=gs["version"])


def is_constant(value, const) -> bool:
    """value == const for a plain str/int/bool constant, never comparing arrays or other types."""
    return type(value) is type(const) and value == const


def _state(holder, what: str, net: str, name: str, func: str) -> dict:
    """The checked state dict of one Network (`holder` a StateHolder)."""
    state = holder.state if isinstance(holder, StateHolder) else None
    if not isinstance(state, dict) or any(k not in state for k in _STATE_KEYS):
        keys = str_keys(state) if isinstance(state, dict) else describe(state)
        raise StyleGAN2PickleError(f"{what}: {net} is not a dnnlib.tflib Network state (need "
                                   f"keys {list(_STATE_KEYS)}, got {keys})")
    if not is_constant(state["version"], 4):
        raise StyleGAN2PickleError(f"{what}: {net} has Network state version "
                                   f"{describe(state['version'])}; StyleGAN2 pickles have "
                                   f"version 4")
    if not is_constant(state["build_func_name"], func):
        raise StyleGAN2PickleError(f"{what}: {net} is built by "
                                   f"{describe(state['build_func_name'])}, expected {func!r} "
                                   f"(only the official StyleGAN2 G_main with G_mapping and "
                                   f"G_synthesis_stylegan2 is supported)")
    if not is_constant(state["name"], name):
        raise StyleGAN2PickleError(f"{what}: {net} is named {describe(state['name'])}, "
                                   f"expected {name!r}")
    if not isinstance(state["static_kwargs"], dict) \
            or not all(isinstance(k, str) for k in state["static_kwargs"]):
        raise StyleGAN2PickleError(f"{what}: {net} static_kwargs is not a dict of keywords")
    if not isinstance(state["build_module_src"], str):
        raise StyleGAN2PickleError(f"{what}: {net} build_module_src is not text")
    return state
