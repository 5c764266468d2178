"""Reader for Keras 2 full-model HDF5 files (`model.save('x.hdf5')`), without TensorFlow.

Layout read here (Keras 2.x, `keras.engine.saving`):
  attrs['model_config']            JSON {"class_name": "Model"|"Functional"|"Sequential",
                                    "config": {"layers": [...], "input_layers", "output_layers"}}
  model_weights/attrs['layer_names']    layer order
  model_weights/<layer>/attrs['weight_names']   e.g. [b"conv2d_7_1/kernel:0", b"conv2d_7_1/bias:0"]
  model_weights/<layer>/<weight_name>            the arrays, in that order
Each layer's variable name is the last path component without ':0' ("kernel", "gamma", ...).
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import h5py
import numpy as np


class KerasH5Error(ValueError):
    """The file is not a readable Keras 2 full-model HDF5 (truncated, not HDF5, missing parts)."""


@dataclasses.dataclass(frozen=True)
class KerasLayer:
    name: str
    class_name: str
    config: dict[str, Any]
    inbound: tuple[str, ...]          # names of the layers feeding this one (its first call)
    weights: dict[str, np.ndarray]    # var name ("kernel", "moving_mean", ...) -> array, file order


@dataclasses.dataclass(frozen=True)
class KerasModel:
    name: str
    layers: dict[str, KerasLayer]     # in model_config order (topological for Keras 2)
    input_layers: tuple[str, ...]
    output_layers: tuple[str, ...]
    keras_version: str
    backend: str


def _text(v) -> str:
    return v.decode("utf-8") if isinstance(v, (bytes, np.bytes_)) else str(v)


def _var_name(weight_name: str) -> str:
    base = weight_name.rsplit("/", 1)[-1]
    return base[:-2] if base.endswith(":0") else base


def _inbound(layer: dict, path: str) -> tuple[str, ...]:
    nodes = layer.get("inbound_nodes", [])
    if not nodes:
        return ()
    if len(nodes) > 1:
        raise KerasH5Error(f"{path}: layer '{layer.get('name')}' is called {len(nodes)} times "
                           f"(shared layers are not supported)")
    node = nodes[0]
    if isinstance(node, dict) or not all(isinstance(t, list) and t for t in node):
        raise KerasH5Error(f"{path}: layer '{layer.get('name')}' has inbound_nodes in an "
                           f"unsupported (non Keras 2) format: {node!r:.200}")
    return tuple(str(t[0]) for t in node)


def _read_layer_weights(group: h5py.Group, layer: str, path: str) -> dict[str, np.ndarray]:
    if layer not in group:
        return {}
    g = group[layer]
    names = [_text(n) for n in g.attrs.get("weight_names", [])]
    out: dict[str, np.ndarray] = {}
    for n in names:
        if n not in g:
            raise KerasH5Error(f"{path}: weight '{layer}/{n}' is listed in weight_names "
                               f"but missing from the file")
        var = _var_name(n)
        if var in out:
            raise KerasH5Error(f"{path}: layer '{layer}' has two weights named '{var}'")
        out[var] = np.asarray(g[n][()])
    return out


def read_keras_h5(path: str | os.PathLike) -> KerasModel:
    """Read the architecture and all weights of a Keras 2 full-model HDF5 file."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"Keras HDF5 model file not found: {path}")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        msg = str(e)
        kind = ("truncated" if "truncated" in msg else
                "not an HDF5 file" if "signature" in msg else "unreadable")
        raise KerasH5Error(f"{path}: cannot open as HDF5 ({kind}): {msg}") from e
    try:
        with f:
            if "model_config" not in f.attrs:
                raise KerasH5Error(f"{path}: no 'model_config' attribute: this is not a Keras "
                                   f"full-model file (a weights-only file?)")
            try:
                cfg = json.loads(_text(f.attrs["model_config"]))
            except json.JSONDecodeError as e:
                raise KerasH5Error(f"{path}: model_config is not valid JSON ({e})") from e
            if "model_weights" not in f:
                raise KerasH5Error(f"{path}: no 'model_weights' group (saved without weights?)")
            mc = cfg.get("config", {})
            layer_list = mc.get("layers") if isinstance(mc, dict) else None
            if not isinstance(layer_list, list):
                raise KerasH5Error(f"{path}: model_config has no layer list "
                                   f"(class_name={cfg.get('class_name')!r})")
            wg = f["model_weights"]
            layers: dict[str, KerasLayer] = {}
            for lay in layer_list:
                name = lay.get("name") or lay.get("config", {}).get("name")
                layers[name] = KerasLayer(name=name, class_name=lay["class_name"],
                                          config=dict(lay.get("config", {})),
                                          inbound=_inbound(lay, path),
                                          weights=_read_layer_weights(wg, name, path))
            return KerasModel(
                name=str(mc.get("name", "")), layers=layers,
                input_layers=tuple(str(t[0]) for t in mc.get("input_layers", [])),
                output_layers=tuple(str(t[0]) for t in mc.get("output_layers", [])),
                keras_version=_text(f.attrs.get("keras_version", "")),
                backend=_text(f.attrs.get("backend", "")))
    except (OSError, KeyError, RuntimeError) as e:
        raise KerasH5Error(f"{path}: corrupt or truncated HDF5 content "
                           f"({type(e).__name__}: {e})") from e
