"""Cydral's dlib gender (32×32) and age (64×64, 81 classes) networks, ported from ONNX.

Input (both): x = (RGB_byte - MEAN_RGB) · SCALE, NCHW float32, RGB order, SCALE = 1/256.
Each dlib "con + affine" pair is conv(x, W) + b followed by a per-channel y·s + o; the
converters fold it, in float64, into one conv: W' = W·s (per output channel),
b' = b·s + o.

Gender (output [N, 2] = softmax over GENDER_LABELS = (female, male)):
  [conv3×3(32) relu]×2, avgpool2 → [conv3×3(64) relu]×2, avgpool2 → 64×8×8
  → ·0.5 → fc(16) relu → ·0.5 → fc(2) → softmax      (the ·0.5 are folded into the fc)
Age (output [N, 81] = softmax over AGE_BINS; the package's age is Σ p_i·AGE_BINS[i]):
  conv7×7/2 valid(64) relu, maxpool3/2 valid                       64×14×14
  res:  relu(x + conv3(conv3(x)))                                  64×14×14
  down: relu(pad(avgpool2(x)) + pad(conv3(conv3/2 valid(x))))      128×7×7
  res                                                              128×7×7
  down                                                             256×3×3
  res, global average pool, fc(81), softmax
where conv3 = 3×3 'same' conv + bias (+ folded affine), the first conv of each block is
followed by relu, and `pad` zero-fills the trailing channels, rows and columns of the
smaller operand up to the larger one (the top-left origin is kept), as the graph's Pad ops
do: the shortcut avgpool2(7×7) = 3×3 only gains channels; in the first down block the
main branch's 6×6 gains a row and a column. Pools are floor-mode with no padding
(ONNX ceil_mode=0, pads 0, so count_include_pad is moot).
Internally NHWC; the fc weights are permuted from ONNX's NCHW flatten order.
"""
from __future__ import annotations

import os
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from tlgan_jax.weights.onnx import OnnxFormatError, OnnxGraph, read_onnx

# Constants from the bundle's manifest.json (models.*.input.normalization, labels, age_weights).
MEAN_RGB = (122.781998, 117.000999, 104.297997)
SCALE = 0.00390625                                    # 1 / 256
GENDER_LABELS = ("female", "male")
AGE_BINS = (0.25,) + tuple(float(a) for a in range(1, 81))
GENDER_SIZE, AGE_SIZE = 32, 64

Params = dict[str, Any]


class Conv(nn.Module):
    """conv(x, kernel) + bias, NHWC/HWIO (flax.linen.Conv's params).

    A 3-channel input to a stride-1 conv (the gender net's first layer) is zero-padded to 4
    channels, kernel likewise: the same sums, and XLA's CPU convolution is faster on 4 input
    channels there (measured; for the age net's 7×7/2 stem it is slower, so not done).
    """
    features: int
    kernel: int
    stride: int = 1
    padding: Any = "SAME"           # "SAME" here means 'same' for odd kernels, stride 1

    @nn.compact
    def __call__(self, x):
        cin = x.shape[-1]
        k = self.param("kernel", nn.initializers.lecun_normal(),
                       (self.kernel, self.kernel, cin, self.features))
        b = self.param("bias", nn.initializers.zeros, (self.features,))
        if cin == 3 and self.stride == 1:
            x = jnp.pad(x, ((0, 0), (0, 0), (0, 0), (0, 1)))
            k = jnp.pad(k, ((0, 0), (0, 0), (0, 1), (0, 0)))
        pad = self.kernel // 2
        padding = [(pad, pad)] * 2 if self.padding == "SAME" else self.padding
        y = jax.lax.conv_general_dilated(x, k, (self.stride, self.stride), padding,
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return y + b


def avg_pool2(x: jax.Array) -> jax.Array:
    """2×2 stride-2 average pool, floor mode (a trailing odd row/column is dropped)."""
    return nn.avg_pool(x, (2, 2), strides=(2, 2), padding="VALID")


def max_pool3s2(x: jax.Array) -> jax.Array:
    """3×3 stride-2 max pool, no padding, floor mode; separable (rows, then columns), which
    XLA's CPU backend runs ~3× faster than a 3×3 reduce_window (max is exact either way)."""
    def along(t, axis):
        n = (t.shape[axis] - 3) // 2 + 1
        taps = [jax.lax.slice_in_dim(t, i, i + 2 * n - 1, 2, axis) for i in range(3)]
        return jnp.maximum(jnp.maximum(taps[0], taps[1]), taps[2])
    return along(along(x, 1), 2)


def add_zero_padded(a: jax.Array, b: jax.Array) -> jax.Array:
    """a + b (NHWC) after zero-filling trailing rows, columns, channels to the larger shape."""
    target = tuple(max(p, q) for p, q in zip(a.shape, b.shape))

    def grow(t):
        if t.shape == target:
            return t
        return jnp.pad(t, [(0, g - s) for s, g in zip(t.shape, target)])
    return grow(a) + grow(b)


class GenderNet(nn.Module):
    """NCHW [N, 3, 32, 32] → probabilities [N, 2] (female, male); logits if `logits`."""
    logits: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = jnp.transpose(x, (0, 2, 3, 1))
        for i, features in enumerate((32, 32, 64, 64)):
            x = nn.relu(Conv(features, 3, name=f"conv{i + 1}")(x))
            if i % 2:
                x = avg_pool2(x)
        x = x.reshape(x.shape[0], -1)
        x = nn.relu(nn.Dense(16, name="fc1")(x))
        z = nn.Dense(2, name="fc2")(x)
        return z if self.logits else jax.nn.softmax(z, axis=-1)


class ResidualBlock(nn.Module):
    """relu(x + conv_b(relu(conv_a(x)))), both 3×3 same convs."""
    features: int

    @nn.compact
    def __call__(self, x):
        y = nn.relu(Conv(self.features, 3, name="conv_a")(x))
        return nn.relu(x + Conv(self.features, 3, name="conv_b")(y))


class DownBlock(nn.Module):
    """relu(pad(avgpool2(x)) + pad(conv_b(relu(conv_a/2 valid(x)))))."""
    features: int

    @nn.compact
    def __call__(self, x):
        y = nn.relu(Conv(self.features, 3, 2, "VALID", name="conv_a")(x))
        y = Conv(self.features, 3, name="conv_b")(y)
        shortcut = avg_pool2(x)
        return nn.relu(add_zero_padded(shortcut, y))


class AgeNet(nn.Module):
    """NCHW [N, 3, 64, 64] → probabilities [N, 81] over AGE_BINS; logits if `logits`."""
    logits: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = jnp.transpose(x, (0, 2, 3, 1))
        x = nn.relu(Conv(64, 7, 2, "VALID", name="stem")(x))
        x = max_pool3s2(x)
        x = ResidualBlock(64, name="res1")(x)
        x = DownBlock(128, name="down2")(x)
        x = ResidualBlock(128, name="res2")(x)
        x = DownBlock(256, name="down3")(x)
        x = ResidualBlock(256, name="res3")(x)
        x = jnp.mean(x, axis=(1, 2))
        z = nn.Dense(81, name="fc")(x)
        return z if self.logits else jax.nn.softmax(z, axis=-1)


def _check_input(x, size: int, what: str) -> jax.Array:
    shape = getattr(x, "shape", None)
    if shape is None or len(shape) != 4 or tuple(shape[1:]) != (3, size, size):
        raise ValueError(f"{what}: input must be preprocessed NCHW float32 of shape "
                         f"[N, 3, {size}, {size}], got shape {shape}")
    return jnp.asarray(x, jnp.float32)


def apply_gender(params: Params, x: jax.Array) -> jax.Array:
    """x [N, 3, 32, 32] (RGB - MEAN_RGB)·SCALE → probabilities [N, 2] (female, male)."""
    return GenderNet().apply({"params": params}, _check_input(x, GENDER_SIZE, "gender net"))


def apply_age(params: Params, x: jax.Array) -> jax.Array:
    """x [N, 3, 64, 64] (RGB - MEAN_RGB)·SCALE → probabilities [N, 81] over AGE_BINS."""
    return AgeNet().apply({"params": params}, _check_input(x, AGE_SIZE, "age net"))


def apply_gender_logits(params: Params, x: jax.Array) -> jax.Array:
    """The gender net's pre-softmax logits [N, 2]; logit[:, 1] - logit[:, 0] = log-odds of male."""
    return GenderNet(logits=True).apply({"params": params},
                                        _check_input(x, GENDER_SIZE, "gender net"))


def apply_age_logits(params: Params, x: jax.Array) -> jax.Array:
    """The age net's pre-softmax logits [N, 81]."""
    return AgeNet(logits=True).apply({"params": params}, _check_input(x, AGE_SIZE, "age net"))


# ----------------------------------------------------------------------------- conversion

# Op sequences of the two graphs (dlib → ONNX exports); a file that differs is not these nets.
_CONV_AFFINE = ("Conv", "Mul", "Add")
_GENDER_OPS = (_CONV_AFFINE + ("Relu",)) * 2 + ("AveragePool",) \
    + (_CONV_AFFINE + ("Relu",)) * 2 + ("AveragePool", "Mul", "Flatten", "Gemm", "Relu", "Mul",
                                        "Flatten", "Gemm", "Softmax")
_AGE_RES = _CONV_AFFINE + ("Relu",) + _CONV_AFFINE + ("Add", "Relu")


def _age_down(main_pad: bool) -> tuple[str, ...]:
    return _CONV_AFFINE + ("Relu",) + _CONV_AFFINE + ("AveragePool", "Pad") \
        + (("Pad",) if main_pad else ()) + ("Add", "Relu")


_AGE_OPS = _CONV_AFFINE + ("Relu", "MaxPool") + _AGE_RES + _age_down(True) + _AGE_RES \
    + _age_down(False) + _AGE_RES + ("GlobalAveragePool", "Flatten", "Gemm", "Softmax")

# (kernel, stride, pad) of each Conv in graph order, and the flax module path it maps to.
_GENDER_CONVS = [((3, 1, 1), (f"conv{i}",)) for i in range(1, 5)]
_AGE_CONVS = [((7, 2, 0), ("stem",)),
              ((3, 1, 1), ("res1", "conv_a")), ((3, 1, 1), ("res1", "conv_b")),
              ((3, 2, 0), ("down2", "conv_a")), ((3, 1, 1), ("down2", "conv_b")),
              ((3, 1, 1), ("res2", "conv_a")), ((3, 1, 1), ("res2", "conv_b")),
              ((3, 2, 0), ("down3", "conv_a")), ((3, 1, 1), ("down3", "conv_b")),
              ((3, 1, 1), ("res3", "conv_a")), ((3, 1, 1), ("res3", "conv_b"))]


def _fail(path, what: str):
    raise OnnxFormatError(f"{path}: {what}; this is not the Cydral network the port implements")


def _init(graph: OnnxGraph, name: str, path) -> np.ndarray:
    if name not in graph.initializers:
        _fail(path, f"expected a constant for {name!r}")
    return graph.initializers[name].astype(np.float64)


def _check_ops(graph: OnnxGraph, expected: Sequence[str], path) -> None:
    if graph.op_types != tuple(expected):
        _fail(path, f"its op sequence {graph.op_types} differs from the expected {tuple(expected)}")


def _folded_convs(graph: OnnxGraph, specs, path) -> Params:
    """Each Conv→Mul→Add triple as {'kernel': HWIO W·s, 'bias': b·s + o}, folded in float64."""
    nodes = graph.nodes
    conv_idx = [i for i, n in enumerate(nodes) if n.op_type == "Conv"]
    if len(conv_idx) != len(specs):
        _fail(path, f"{len(conv_idx)} Conv nodes instead of {len(specs)}")
    params: Params = {}
    for i, ((kernel, stride, pad), module_path) in zip(conv_idx, specs):
        conv, mul, add = nodes[i:i + 3]
        a = conv.attributes
        if (list(a.get("kernel_shape", [])) != [kernel, kernel]
                or list(a.get("strides", [1, 1])) != [stride, stride]
                or list(a.get("pads", [0] * 4)) != [pad] * 4
                or list(a.get("dilations", [1, 1])) != [1, 1] or a.get("group", 1) != 1
                or a.get("auto_pad", "NOTSET") != "NOTSET"):
            _fail(path, f"Conv {conv.name!r} has attributes {a}, expected kernel {kernel}, "
                        f"stride {stride}, pads {pad}")
        if mul.inputs[0] != conv.outputs[0] or add.inputs[0] != mul.outputs[0]:
            _fail(path, f"Conv {conv.name!r} is not followed by its affine Mul/Add")
        w = _init(graph, conv.inputs[1], path)                     # [O, I, kh, kw]
        b = _init(graph, conv.inputs[2], path) if len(conv.inputs) > 2 else np.zeros(w.shape[0])
        s = _init(graph, mul.inputs[1], path).reshape(-1)
        o = _init(graph, add.inputs[1], path).reshape(-1)
        if not (s.shape == o.shape == b.shape == (w.shape[0],)):
            _fail(path, f"affine after {conv.name!r} is not per output channel")
        leaf = {"kernel": np.transpose(w * s[:, None, None, None], (2, 3, 1, 0)).astype(np.float32),
                "bias": (b * s + o).astype(np.float32)}
        node = params
        for key in module_path[:-1]:
            node = node.setdefault(key, {})
        node[module_path[-1]] = leaf
    return params


def _gemm(graph: OnnxGraph, node, path, input_scale: float = 1.0) -> dict[str, np.ndarray]:
    """Gemm y = x·W + b (transB=0, alpha=beta=1) as a Dense {'kernel': W·input_scale, 'bias'}."""
    a = node.attributes
    if (a.get("transA", 0), a.get("transB", 0), a.get("alpha", 1.0), a.get("beta", 1.0)) \
            != (0, 0, 1.0, 1.0):
        _fail(path, f"Gemm {node.name!r} has attributes {a}")
    w = _init(graph, node.inputs[1], path) * input_scale
    return {"kernel": w, "bias": _init(graph, node.inputs[2], path)}


def _scalar(graph: OnnxGraph, node, path) -> float:
    value = _init(graph, node.inputs[1], path)
    if value.size != 1:
        _fail(path, f"Mul {node.name!r} is not by a scalar")
    return float(value.reshape(()))


def _check_pools(graph: OnnxGraph, path) -> None:
    for n in graph.nodes:
        if n.op_type in ("AveragePool", "MaxPool"):
            a = n.attributes
            k = 2 if n.op_type == "AveragePool" else 3
            if (list(a.get("kernel_shape", [])) != [k, k] or list(a.get("strides", [])) != [2, 2]
                    or list(a.get("pads", [0] * 4)) != [0] * 4 or a.get("ceil_mode", 0) != 0
                    or a.get("auto_pad", "NOTSET") != "NOTSET"):
                _fail(path, f"{n.op_type} {n.name!r} has attributes {a}")
        if n.op_type == "Softmax" and n.attributes.get("axis", -1) not in (1, -1):
            _fail(path, f"Softmax {n.name!r} is not over the class axis")


def _to_f32(tree):
    return jax.tree_util.tree_map(lambda a: np.asarray(a, np.float32), tree)


def convert_gender(onnx_path: str | os.PathLike) -> Params:
    """gender-v1.onnx → params for `apply_gender` (affine folded in float64, fc rows NHWC)."""
    graph = read_onnx(onnx_path)
    _check_ops(graph, _GENDER_OPS, onnx_path)
    _check_pools(graph, onnx_path)
    params = _folded_convs(graph, _GENDER_CONVS, onnx_path)
    nodes = graph.nodes
    mul1, gemm1, mul2, gemm2 = [nodes[i] for i in (18, 20, 22, 24)]
    fc1 = _gemm(graph, gemm1, onnx_path, _scalar(graph, mul1, onnx_path))
    if fc1["kernel"].shape != (64 * 8 * 8, 16):
        _fail(onnx_path, f"fc1 weight has shape {fc1['kernel'].shape}")
    # ONNX flattens NCHW (c, h, w); our features are flattened NHWC (h, w, c).
    fc1["kernel"] = fc1["kernel"].reshape(64, 8, 8, 16).transpose(1, 2, 0, 3).reshape(-1, 16)
    params["fc1"] = fc1
    params["fc2"] = _gemm(graph, gemm2, onnx_path, _scalar(graph, mul2, onnx_path))
    return _to_f32(params)


def convert_age(onnx_path: str | os.PathLike) -> Params:
    """age-v1.onnx → params for `apply_age` (affine folded in float64)."""
    graph = read_onnx(onnx_path)
    _check_ops(graph, _AGE_OPS, onnx_path)
    _check_pools(graph, onnx_path)
    # The Pad ops must only append zeros at the end (trailing channels/rows/columns).
    for n in graph.nodes:
        if n.op_type == "Pad":
            pads = graph.initializers.get(n.inputs[1])
            if (n.attributes.get("mode", "constant") != "constant" or pads is None
                    or pads.shape != (8,) or np.any(pads[:4] != 0) or np.any(pads < 0)
                    or pads[4] != 0 or (len(n.inputs) > 2 and n.inputs[2])):
                _fail(onnx_path, f"Pad {n.name!r} is not a trailing zero pad (pads {pads})")
    params = _folded_convs(graph, _AGE_CONVS, onnx_path)
    params["fc"] = _gemm(graph, graph.nodes[-2], onnx_path)
    if params["fc"]["kernel"].shape != (256, 81):
        _fail(onnx_path, f"fc weight has shape {params['fc']['kernel'].shape}")
    return _to_f32(params)
