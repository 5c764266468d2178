"""NVIDIA's official StyleGAN2 pickle (`stylegan2-*-config-f.pkl`, NVlabs/stylegan2) read
without TensorFlow.

The file is a pickled 3-tuple (G, D, Gs) of `dnnlib.tflib.network.Network`; each pickles its
state {version 4, name, static_kwargs, components, build_module_src, build_func_name,
variables=[(name, value)]}, and G/Gs nest their `mapping` and `synthesis` Networks in
`components`. It is unpickled through the pg-GAN reader's allow-list (the same NumPy entries)
with this Network class mapped to an inert `StateHolder`; any other global is refused before it
is imported, and `build_module_src` stays text, never executed. Only Gs is used.

The config comes from static_kwargs as the official code sees them: each component's own
kwargs overridden by Gs's (G_main passes its **kwargs to the components at run time), with the
official defaults where absent. Every kwarg must be known: the ones that shape the network are
read and checked (label_size 0, architecture 'skip', lrelu, float32, resample_kernel
[1,3,3,1]), the run-time/training ones are ignored (truncation_*, randomize_noise,
fused_modconv, dlatent_avg_beta, style_mixing_prob, ...), anything else is refused. Then every
variable name and shape is checked against `StyleGAN2Config.variable_shapes()`.
"""
from __future__ import annotations

import dataclasses
import os
import stat

import numpy as np

from tlgan_jax.models.stylegan2 import StyleGAN2Config, params_from_variables
from tlgan_jax.readers import pggan_pickle
from tlgan_jax.readers.pggan_pickle import tflib_networks, tflib_variables
from tlgan_jax.readers.safe_pickle import (CorruptPickleError, StateHolder,  # noqa: F401
                                           UnsafePickleError, restricted_loads)

NETWORK_CLASS = ("dnnlib.tflib.network", "Network")


class StyleGAN2PickleError(ValueError):
    """The pickle is well-formed but is not an official StyleGAN2 G_main (skip) network."""


# The tflib pickles' one allow-list (NumPy entries shared with the pg-GAN reader), with
# dnnlib's Network class in place of pg-GAN's tfutil.Network.
_ALLOWED = {k: v for k, v in pggan_pickle._ALLOWED.items() if k != ("tfutil", "Network")}
_ALLOWED[NETWORK_CLASS] = StateHolder

_STATE_KEYS = ("version", "name", "static_kwargs", "components", "build_module_src",
               "build_func_name", "variables")
# G_main's own keyword arguments that do not reach the components. Truncation is the caller's
# choice (Gs.run's arguments override these anyway); the rest act only while training.
_G_MAIN_IGNORED = ("truncation_psi", "truncation_cutoff", "truncation_psi_val",
                   "truncation_cutoff_val", "dlatent_avg_beta", "style_mixing_prob",
                   "return_dlatents", "is_template_graph")
_G_MAIN_FUNCS = {"mapping_func": "G_mapping", "synthesis_func": "G_synthesis_stylegan2"}
_MUST_BE_FALSE = ("is_training", "is_validation")
# G_mapping's and G_synthesis_stylegan2's keyword defaults (networks_stylegan2.py).
_MAPPING_DEFAULTS = dict(latent_size=512, label_size=0, dlatent_size=512, dlatent_broadcast=None,
                         mapping_layers=8, mapping_fmaps=512, mapping_lrmul=0.01,
                         mapping_nonlinearity="lrelu", normalize_latents=True, dtype="float32")
_SYNTHESIS_DEFAULTS = dict(dlatent_size=512, num_channels=3, resolution=1024, fmap_base=16 << 10,
                           fmap_decay=1.0, fmap_min=1, fmap_max=512, architecture="skip",
                           nonlinearity="lrelu", dtype="float32", resample_kernel=[1, 3, 3, 1])
# accepted and ignored: how noise is drawn is a run-time choice; fused_modconv only reorders
# float operations; structure is read by other synthesis functions only
_SYNTHESIS_IGNORED = ("randomize_noise", "fused_modconv", "structure")
_KNOWN = (set(_G_MAIN_IGNORED) | set(_G_MAIN_FUNCS) | set(_MUST_BE_FALSE) | set(_MAPPING_DEFAULTS)
          | set(_SYNTHESIS_DEFAULTS) | set(_SYNTHESIS_IGNORED))


@dataclasses.dataclass(frozen=True, eq=False)
class StyleGAN2Network:
    """Gs of the pickle: its static_kwargs, its variables and those of its components (named
    'dlatent_avg', 'lod', 'mapping/Dense0/weight', 'synthesis/4x4/Conv/weight', ...; float32,
    stored layouts) and the derived config."""
    name: str
    static_kwargs: dict
    variables: dict
    config: StyleGAN2Config
    version: int = 4


def load_stylegan2_pickle(path: str | os.PathLike) -> StyleGAN2Network:
    """Read Gs from NVIDIA's StyleGAN2 pickle at `path` (no TensorFlow, no code from the file).
    A missing, unreadable or non-regular file (a directory, /dev/zero) raises one OSError
    naming it."""
    path = os.fspath(path)
    hint = "pass the path of an official StyleGAN2 pickle, e.g. stylegan2-ffhq-config-f.pkl"
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):   # before open: a FIFO would block
            raise OSError(f"{path}: not a regular file; {hint}")
        f = open(path, "rb")
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such StyleGAN2 pickle; {hint}") from None
    except OSError as e:
        if e.args and str(e.args[0]).startswith(f"{path}: "):
            raise
        raise OSError(f"{path}: cannot open the StyleGAN2 pickle ({e.strerror or e}); "
                      f"{hint}") from None
    with f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise OSError(f"{path}: not a regular file; {hint}")
        try:
            data = f.read()
        except OSError as e:
            raise OSError(f"{path}: cannot read the StyleGAN2 pickle ({e.strerror or e}); "
                          f"{hint}") from None
    return parse_stylegan2_pickle(data, what=path)


def parse_stylegan2_pickle(data: bytes, what: str = "StyleGAN2 pickle") -> StyleGAN2Network:
    """`load_stylegan2_pickle` on bytes. Raises UnsafePickleError (a global off the allow-list;
    nothing ran), CorruptPickleError (truncated) or StyleGAN2PickleError (wrong structure)."""
    obj = restricted_loads(data, _ALLOWED, what=what)
    gs = tflib_networks(obj, what, StyleGAN2PickleError, ".".join(NETWORK_CLASS))[2]
    gs = _state(gs, what, "Gs", "Gs", "G_main")
    comps = gs["components"]
    if not (isinstance(comps, dict) and set(comps) == {"mapping", "synthesis"}):
        keys = sorted(comps) if isinstance(comps, dict) else type(comps).__name__
        raise StyleGAN2PickleError(f"{what}: Gs components must be 'mapping' and 'synthesis', "
                                   f"got {keys}")
    mapping = _state(comps["mapping"], what, "Gs mapping", "G_mapping", "G_mapping")
    synthesis = _state(comps["synthesis"], what, "Gs synthesis", "G_synthesis",
                       "G_synthesis_stylegan2")
    for net, st in (("Gs mapping", mapping), ("Gs synthesis", synthesis)):
        if not (isinstance(st["components"], dict) and not st["components"]):
            raise StyleGAN2PickleError(f"{what}: {net} must have no components")
    config = config_from_kwargs(gs["static_kwargs"], mapping["static_kwargs"],
                                synthesis["static_kwargs"], what)
    variables = tflib_variables(gs["variables"], what, StyleGAN2PickleError, "Gs")
    for prefix, st in (("mapping", mapping), ("synthesis", synthesis)):
        own = tflib_variables(st["variables"], what, StyleGAN2PickleError, f"Gs {prefix}")
        variables.update({f"{prefix}/{k}": v for k, v in own.items()})
    try:
        params_from_variables(variables, config)  # checks every name and shape
    except ValueError as e:
        raise StyleGAN2PickleError(f"{what}: {e}") from None
    return StyleGAN2Network(name=gs["name"], static_kwargs=dict(gs["static_kwargs"]),
                            variables=variables, config=config, version=gs["version"])


def _is(value, const) -> bool:
    """value == const for a plain str/int/bool constant, never comparing arrays or other types."""
    return type(value) is type(const) and value == const


def _state(holder, what: str, net: str, name: str, func: str) -> dict:
    """The checked state dict of one Network (`holder` a StateHolder)."""
    state = holder.state if isinstance(holder, StateHolder) else None
    if not isinstance(state, dict) or any(k not in state for k in _STATE_KEYS):
        keys = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise StyleGAN2PickleError(f"{what}: {net} is not a dnnlib.tflib Network state (need "
                                   f"keys {list(_STATE_KEYS)}, got {keys})")
    if not _is(state["version"], 4):
        raise StyleGAN2PickleError(f"{what}: {net} has Network state version "
                                   f"{state['version']!r}; StyleGAN2 pickles have version 4")
    if not _is(state["build_func_name"], func):
        raise StyleGAN2PickleError(f"{what}: {net} is built by {state['build_func_name']!r}, "
                                   f"expected {func!r} (only the official StyleGAN2 G_main with "
                                   f"G_mapping and G_synthesis_stylegan2 is supported)")
    if not _is(state["name"], name):
        raise StyleGAN2PickleError(f"{what}: {net} is named {state['name']!r}, expected {name!r}")
    if not isinstance(state["static_kwargs"], dict) \
            or not all(isinstance(k, str) for k in state["static_kwargs"]):
        raise StyleGAN2PickleError(f"{what}: {net} static_kwargs is not a dict of keywords")
    if not isinstance(state["build_module_src"], str):
        raise StyleGAN2PickleError(f"{what}: {net} build_module_src is not text")
    return state


def config_from_kwargs(gs_kwargs: dict, mapping_kwargs: dict, synthesis_kwargs: dict,
                       what: str = "StyleGAN2 pickle") -> StyleGAN2Config:
    """StyleGAN2Config from the three networks' static_kwargs (module docstring)."""
    for net, kw in (("Gs", gs_kwargs), ("mapping", mapping_kwargs),
                    ("synthesis", synthesis_kwargs)):
        unknown = sorted(set(kw) - _KNOWN)
        if unknown:
            raise StyleGAN2PickleError(f"{what}: unknown {net} static_kwargs {unknown}: not an "
                                       f"official StyleGAN2 G_main network (or one whose extra "
                                       f"settings this reader cannot honour)")
    for key, func in _G_MAIN_FUNCS.items():
        if key in gs_kwargs and not _is(gs_kwargs[key], func):
            raise StyleGAN2PickleError(f"{what}: Gs {key}={gs_kwargs[key]!r}; only {func!r} "
                                       f"is supported")
    for key in _MUST_BE_FALSE:
        for net, kw in (("Gs", gs_kwargs), ("mapping", mapping_kwargs),
                        ("synthesis", synthesis_kwargs)):
            if key in kw and not _is(kw[key], False):
                raise StyleGAN2PickleError(f"{what}: {net} static_kwargs {key}={kw[key]!r}; "
                                           f"only inference networks ({key}=False) are supported")
    passed = {k: v for k, v in gs_kwargs.items()
              if k not in _G_MAIN_IGNORED and k not in _G_MAIN_FUNCS}
    m = {**_MAPPING_DEFAULTS, **mapping_kwargs, **passed}
    s = {**_SYNTHESIS_DEFAULTS, "label_size": 0, **synthesis_kwargs, **passed}

    def fail(msg):
        raise StyleGAN2PickleError(f"{what}: {msg}")

    def integer(kw, key):
        v = kw[key]
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            fail(f"static_kwargs {key}={v!r} is not an integer")
        return int(v)

    def real(kw, key):
        v = kw[key]
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
            fail(f"static_kwargs {key}={v!r} is not a number")
        return float(v)

    if integer(m, "label_size") != 0 or integer(s, "label_size") != 0:
        fail(f"conditional StyleGAN2 (label_size={m['label_size']!r}) is not supported; only "
             f"unconditional networks (label_size 0, e.g. FFHQ) are")
    if not _is(s["architecture"], "skip"):
        fail(f"architecture {s['architecture']!r} is not supported; only 'skip' (configs e and "
             f"f, all released StyleGAN2 networks) is")
    for kw, key in ((m, "mapping_nonlinearity"), (s, "nonlinearity")):
        if not _is(kw[key], "lrelu"):
            fail(f"{key}={kw[key]!r} is not supported; only 'lrelu'")
    for kw in (m, s):
        if not _is(kw["dtype"], "float32"):
            fail(f"dtype {kw['dtype']!r} is not supported; only 'float32'")
    rk = s["resample_kernel"]
    if not (isinstance(rk, (list, tuple)) and len(rk) == 4
            and all(not isinstance(v, bool) and isinstance(v, (int, float)) for v in rk)
            and [float(v) for v in rk] == [1.0, 3.0, 3.0, 1.0]):
        fail(f"resample_kernel {rk!r} is not supported; only [1, 3, 3, 1]")
    if not isinstance(m["normalize_latents"], bool):
        fail(f"static_kwargs normalize_latents={m['normalize_latents']!r} is not a bool")
    if integer(m, "dlatent_size") != integer(s, "dlatent_size"):
        fail(f"mapping dlatent_size {m['dlatent_size']} != synthesis dlatent_size "
             f"{s['dlatent_size']}")
    try:
        config = StyleGAN2Config(
            resolution=integer(s, "resolution"), num_channels=integer(s, "num_channels"),
            latent_size=integer(m, "latent_size"), dlatent_size=integer(s, "dlatent_size"),
            mapping_layers=integer(m, "mapping_layers"), mapping_fmaps=integer(m, "mapping_fmaps"),
            mapping_lrmul=real(m, "mapping_lrmul"), normalize_latents=m["normalize_latents"],
            fmap_base=integer(s, "fmap_base"), fmap_decay=real(s, "fmap_decay"),
            fmap_min=integer(s, "fmap_min"), fmap_max=integer(s, "fmap_max"))
    except ValueError as e:
        raise StyleGAN2PickleError(f"{what}: invalid G_main settings: {e}") from None
    if m["dlatent_broadcast"] is not None and integer(m, "dlatent_broadcast") != config.num_layers:
        fail(f"mapping dlatent_broadcast {m['dlatent_broadcast']} != the synthesis network's "
             f"{config.num_layers} style inputs")
    return config
