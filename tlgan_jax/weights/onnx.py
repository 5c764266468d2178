"""Read an ONNX model as plain data: initializers (numpy) + node list (python values).

Nothing is executed: the protobuf is parsed with the `onnx` package, every initializer
becomes a numpy array (`onnx.numpy_helper.to_array`), every node an `OnnxNode` with its
op type, input/output names and attributes converted to python values (ints, floats,
str, lists, numpy arrays for tensor attributes). Ports use this to map weights onto
explicitly written architectures and to check that a graph is the one they implement.

A missing file gives `FileNotFoundError`; a truncated, non-ONNX or internally inconsistent
file (dangling tensor names, data stored outside the file) gives `OnnxFormatError`.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np


class OnnxFormatError(ValueError):
    """The file is not a readable, self-contained ONNX model (truncated, corrupt, other kind)."""


@dataclasses.dataclass(frozen=True)
class OnnxNode:
    op_type: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attributes: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class OnnxGraph:
    """A parsed ONNX model: `initializers[name]` numpy arrays, `nodes` in graph order."""
    initializers: dict[str, np.ndarray]
    nodes: tuple[OnnxNode, ...]
    inputs: tuple[str, ...]      # graph inputs that are not initializers
    outputs: tuple[str, ...]
    opset: int                   # default-domain opset version
    ir_version: int

    @property
    def op_types(self) -> tuple[str, ...]:
        return tuple(n.op_type for n in self.nodes)

    def producer(self, tensor: str) -> OnnxNode:
        """The node that outputs `tensor` (KeyError if it is an input or initializer)."""
        for node in self.nodes:
            if tensor in node.outputs:
                return node
        raise KeyError(f"no node produces tensor {tensor!r}")


def _attribute_value(attribute) -> Any:
    from onnx import helper, numpy_helper
    value = helper.get_attribute_value(attribute)
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, list):
        return [v.decode("utf-8") if isinstance(v, bytes) else v for v in value]
    if hasattr(value, "data_type") and hasattr(value, "dims"):       # TensorProto
        return numpy_helper.to_array(value)
    return value


def read_onnx(path: str | os.PathLike) -> OnnxGraph:
    """Parse the ONNX file at `path` into an `OnnxGraph` (see module doc for errors)."""
    import onnx
    from google.protobuf.message import DecodeError
    from onnx import numpy_helper

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"ONNX model not found: {path}")
    with open(path, "rb") as f:
        data = f.read()
    try:
        model = onnx.ModelProto()
        model.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as e:
        raise OnnxFormatError(f"{path}: not a readable ONNX model, the file is truncated or "
                              f"corrupt ({type(e).__name__}: {e})") from e
    graph = model.graph
    if model.ir_version <= 0 or not graph.node or not graph.output:
        raise OnnxFormatError(f"{path}: not an ONNX model, or a truncated one (ir_version "
                              f"{model.ir_version}, {len(graph.node)} nodes, "
                              f"{len(graph.output)} outputs)")

    initializers: dict[str, np.ndarray] = {}
    for tensor in graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            raise OnnxFormatError(f"{path}: initializer {tensor.name!r} is stored outside the "
                                  f"file (external data is not supported)")
        try:
            initializers[tensor.name] = np.array(numpy_helper.to_array(tensor))
        except (ValueError, TypeError, RuntimeError) as e:
            raise OnnxFormatError(f"{path}: initializer {tensor.name!r} is truncated or "
                                  f"corrupt ({type(e).__name__}: {e})") from e

    nodes = tuple(
        OnnxNode(op_type=n.op_type, name=n.name, inputs=tuple(n.input), outputs=tuple(n.output),
                 attributes={a.name: _attribute_value(a) for a in n.attribute})
        for n in graph.node)

    inputs = tuple(i.name for i in graph.input if i.name not in initializers)
    known = set(initializers) | set(inputs) | {""}          # "" marks an omitted optional input
    for node in nodes:
        for name in node.inputs:
            if name not in known:
                raise OnnxFormatError(f"{path}: node {node.name or node.op_type!r} reads tensor "
                                      f"{name!r} that nothing defines (truncated or corrupt "
                                      f"graph)")
        known.update(node.outputs)
    outputs = tuple(o.name for o in graph.output)
    for name in outputs:
        if name not in known:
            raise OnnxFormatError(f"{path}: graph output {name!r} is not produced by any node "
                                  f"(truncated or corrupt graph)")

    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    return OnnxGraph(initializers=initializers, nodes=nodes, inputs=inputs, outputs=outputs,
                     opset=int(opset), ir_version=int(model.ir_version))
