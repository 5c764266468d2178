"""face-api's age/gender, expression and face-recognition nets (`@vladmandic/face-api` 1.7.15,
tfjs) as pure JAX functions of a params pytree.

Preprocessing (face-api `NetInput.toBatchTensor(size, isCenterInputs=true)`, the same for all
three nets; only `size` differs: 112, 112, 150):
  RGB in 0..255 -> zero-pad the shorter side to a square, round(d/2) rows/columns after the
  image and the rest before (JS Math.round) -> tfjs `resizeBilinear(alignCorners=false,
  halfPixelCenters=false)` to size x size, skipped when already that size:
      src = dst * in/out, y0 = floor(src), y1 = min(ceil(src), in - 1), f = src - y0,
      top = a + (b - a) f_x, bottom = c + (d - c) f_x, value = top + (bottom - top) f_y
  -> (x - [122.782, 117.001, 104.298]) / 255.
`preprocess` does this; the nets take the result as NCHW float32 (like the other ports here;
face-api itself runs NHWC) and compute NHWC inside.

Notation: Sep(c) = tfjs separableConv2d 'same' (depthwise 3x3, then pointwise 1x1 to c) + bias;
'same' padding is TF's (pad_total = max((ceil(n/s) - 1) s + k - n, 0), the odd one after).
Age/gender (TinyXception with 2 middle blocks, 112 -> 7):
  h = ReLU(Conv3x3/2(32) + b)
  reduction(h, c, act) = MaxPool3x3/2 same(Sep(c)(ReLU(Sep(c)(act ? ReLU h : h)))) + Conv1x1/2(c)(h)
  h = reduction(h, 64, no act); h = reduction(h, 128)
  main(h) = h + Sep(ReLU(Sep(ReLU(Sep(ReLU h)))))          x 2 (128 channels)
  h = reduction(h, 256); h = ReLU(Sep(512)(h)); f = mean over the 7 x 7 positions
  age = f W_age + b_age (years); gender = softmax(f W_g + b_g), index 0 = male.
Expression (FaceFeatureExtractor: 4 dense blocks, 112 -> 7):
  dense(h, c): o1 = ReLU(first ? Conv3x3/2(c)(h) + b : Sep/2(c)(h)); o2 = Sep(o1);
  o3 = Sep(ReLU(o1 + o2)); o4 = Sep(ReLU(o1 + o2 + o3)); out = ReLU(o1 + o2 + o3 + o4)
  c = 32, 64, 128, 256; f = mean over 7 x 7; probabilities = softmax(f W + b) over
  neutral, happy, sad, angry, fearful, disgusted, surprised.
Face recognition (dlib-style ResNet-34, 150 -> 1):
  C(h) = (Conv(h) + b) * s_w + s_b (a conv then a per-channel scale layer)
  h = MaxPool3x3/2 valid(ReLU(C7x7/2 valid(32)(h)))
  residual(h) = ReLU(h + C3x3(ReLU(C3x3(h))))        ('same', stride 1)
  down(h, c) = ReLU(pad(C3x3(ReLU(C3x3/2 valid(c)(h)))) + [AvgPool2x2/2(h), 0 channels if c grows])
      where pad appends a zero row and column when the pooled map is one larger
  h: 3 x residual(32); down(64), 3 x residual; down(128), 2 x residual; down(256), 2 x residual,
  down(256); descriptor = mean_{h,w}(h) W (128-d). Same person: Euclidean distance < 0.6.
Depthwise 3x3 convolutions are nine shifted multiply-adds (`shifted_taps3x3`), not XLA's
grouped convolution, which is much slower on CPU.
"""
from __future__ import annotations

import math
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tlgan_jax.extractors.fer import shifted_taps3x3
from tlgan_jax.weights.tfjs import read_tfjs_weights

MEAN_RGB = (122.782, 117.001, 104.298)
AGE_GENDER_SIZE = 112
EXPRESSION_SIZE = 112
RECOGNITION_SIZE = 150
EXPRESSION_LABELS = ("neutral", "happy", "sad", "angry", "fearful", "disgusted", "surprised")
GENDER_LABELS = ("male", "female")
SAME_PERSON_DISTANCE = 0.6     # face-api / dlib: same person below this Euclidean distance
DESCRIPTOR_DIM = 128


class UnsupportedWeightsError(ValueError):
    """The tfjs weights do not have exactly the names and shapes of the net ported here."""


# ----------------------------------------------------------------------------- preprocessing

def _pad_centred(x: jax.Array) -> jax.Array:
    """NHWC -> square: zeros after the image (round(d/2), JS rounding) and before (the rest)."""
    n, h, w, c = x.shape
    d = abs(h - w)
    after = math.floor(d * 0.5 + 0.5)
    pad = (d - after, after)
    if h > w:
        return jnp.pad(x, ((0, 0), (0, 0), pad, (0, 0)))
    return jnp.pad(x, ((0, 0), pad, (0, 0), (0, 0)))


def _bilinear_taps(n_in: int, n_out: int):
    src = (n_in / n_out) * np.arange(n_out, dtype=np.float64)
    lo = np.maximum(0, np.floor(src)).astype(np.int32)
    hi = np.minimum(n_in - 1, np.ceil(src)).astype(np.int32)
    return lo, hi, (src - lo).astype(np.float32)


def resize_bilinear_tfjs(x: jax.Array, size: int) -> jax.Array:
    """tfjs resizeBilinear(alignCorners=false, halfPixelCenters=false) of NHWC `x` to size²."""
    n, h, w, c = x.shape
    if (h, w) == (size, size):
        return x
    y0, y1, fy = _bilinear_taps(h, size)
    x0, x1, fx = _bilinear_taps(w, size)
    fx = fx[None, None, :, None]
    rows0, rows1 = x[:, y0], x[:, y1]
    top = rows0[:, :, x0] + (rows0[:, :, x1] - rows0[:, :, x0]) * fx
    bottom = rows1[:, :, x0] + (rows1[:, :, x1] - rows1[:, :, x0]) * fx
    return top + (bottom - top) * fy[None, :, None, None]


def preprocess(images: jax.Array, size: int) -> jax.Array:
    """NHWC RGB in 0..255 (any size) -> the nets' NCHW input (pad, resize, normalise)."""
    x = resize_bilinear_tfjs(_pad_centred(jnp.asarray(images, jnp.float32)), size)
    x = (x - jnp.asarray(MEAN_RGB, jnp.float32)) / 255.0
    return jnp.transpose(x, (0, 3, 1, 2))


# ----------------------------------------------------------------------------- layers (NHWC)

def _same_pads(n: int, k: int, s: int) -> tuple[int, int]:
    total = max((-(-n // s) - 1) * s + k - n, 0)
    return total // 2, total - total // 2


def _conv(x, w, stride: int, padding: str):
    """tf.conv2d, NHWC input, HWIO kernel, TF 'same' or 'valid' padding."""
    if padding == "same":
        pads = [_same_pads(x.shape[1], w.shape[0], stride),
                _same_pads(x.shape[2], w.shape[1], stride)]
    else:
        pads = [(0, 0), (0, 0)]
    return jax.lax.conv_general_dilated(x, w, (stride, stride), pads,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _depthwise3x3(x, k, stride: int):
    """Depthwise 3x3 'same' conv (TF padding), k: [3, 3, C, 1] as stored by tfjs."""
    n, h, w, c = x.shape
    ph, pw = _same_pads(h, 3, stride), _same_pads(w, 3, stride)
    oh, ow = -(-h // stride), -(-w // stride)
    xp = jnp.pad(x, ((0, 0), ph, pw, (0, 0)))
    return shifted_taps3x3(xp, k.reshape(3, 3, 1, c), oh, ow, stride)


def _separable(x, p, stride: int = 1):
    """tfjs separableConv2d 'same' + bias."""
    y = _depthwise3x3(x, p["depthwise_filter"], stride)
    return _conv(y, p["pointwise_filter"], 1, "valid") + p["bias"]


def _max_pool3x3_s2(x, padding: str):
    if padding == "same":
        pads = ((0, 0), _same_pads(x.shape[1], 3, 2), _same_pads(x.shape[2], 3, 2), (0, 0))
    else:
        pads = ((0, 0),) * 4
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1, 2, 2, 1), pads)


def _nhwc(x, size: int, what: str):
    shape = getattr(x, "shape", None)
    if shape is None or len(shape) != 4 or tuple(shape[1:]) != (3, size, size):
        raise ValueError(f"faceapi {what}: input must be preprocessed NCHW [N, 3, {size}, {size}] "
                         f"((RGB - {list(MEAN_RGB)}) / 255; see faceapi.preprocess), got {shape}")
    return jnp.transpose(jnp.asarray(x, jnp.float32), (0, 2, 3, 1))


# ----------------------------------------------------------------------------- age / gender

def _reduction(h, p, activate: bool = True):
    y = _separable(jax.nn.relu(h) if activate else h, p["separable_conv0"])
    y = _separable(jax.nn.relu(y), p["separable_conv1"])
    y = _max_pool3x3_s2(y, "same")
    return y + _conv(h, p["expansion_conv"]["filters"], 2, "same") + p["expansion_conv"]["bias"]


def age_gender_logits(params, x) -> tuple[jax.Array, jax.Array]:
    """[N, 3, 112, 112] preprocessed -> (age in years [N], gender logits [N, 2] (male, female))."""
    h = _nhwc(x, AGE_GENDER_SIZE, "age/gender net")
    e, m, o = params["entry_flow"], params["middle_flow"], params["exit_flow"]
    h = jax.nn.relu(_conv(h, e["conv_in"]["filters"], 2, "same") + e["conv_in"]["bias"])
    h = _reduction(h, e["reduction_block_0"], activate=False)
    h = _reduction(h, e["reduction_block_1"])
    for i in range(len(m)):
        b = m[f"main_block_{i}"]
        y = _separable(jax.nn.relu(h), b["separable_conv0"])
        y = _separable(jax.nn.relu(y), b["separable_conv1"])
        h = _separable(jax.nn.relu(y), b["separable_conv2"]) + h
    h = _reduction(h, o["reduction_block"])
    h = jax.nn.relu(_separable(h, o["separable_conv"]))
    f = jnp.mean(h, axis=(1, 2))
    fc = params["fc"]
    age = (f @ fc["age"]["weights"] + fc["age"]["bias"])[:, 0]
    return age, f @ fc["gender"]["weights"] + fc["gender"]["bias"]


def apply_age_gender(params, x) -> jax.Array:
    """[N, 3, 112, 112] preprocessed -> [N, 3]: age in years, p(male), p(female)."""
    age, logits = age_gender_logits(params, x)
    return jnp.concatenate([age[:, None], jax.nn.softmax(logits, axis=-1)], axis=1)


# ----------------------------------------------------------------------------- expression

def _dense_block(h, p, first: bool):
    if first:
        o1 = _conv(h, p["conv0"]["filters"], 2, "same") + p["conv0"]["bias"]
    else:
        o1 = _separable(h, p["conv0"], stride=2)
    o1 = jax.nn.relu(o1)
    o2 = _separable(o1, p["conv1"])
    o3 = _separable(jax.nn.relu(o1 + o2), p["conv2"])
    o4 = _separable(jax.nn.relu(o1 + (o2 + o3)), p["conv3"])
    return jax.nn.relu(o1 + (o2 + (o3 + o4)))


def expression_logits(params, x) -> jax.Array:
    """[N, 3, 112, 112] preprocessed -> pre-softmax logits [N, 7] (EXPRESSION_LABELS order)."""
    h = _nhwc(x, EXPRESSION_SIZE, "expression net")
    for i in range(4):
        h = _dense_block(h, params[f"dense{i}"], first=i == 0)
    f = jnp.mean(h, axis=(1, 2))
    return f @ params["fc"]["weights"] + params["fc"]["bias"]


def apply_expression(params, x) -> jax.Array:
    """[N, 3, 112, 112] preprocessed -> expression probabilities [N, 7]."""
    return jax.nn.softmax(expression_logits(params, x), axis=-1)


# ----------------------------------------------------------------------------- recognition

def _scaled_conv(h, p, stride: int, padding: str):
    y = _conv(h, p["conv"]["filters"], stride, padding) + p["conv"]["bias"]
    return y * p["scale"]["weights"] + p["scale"]["biases"]


def _residual(h, p):
    y = jax.nn.relu(_scaled_conv(h, p["conv1"], 1, "same"))
    return jax.nn.relu(_scaled_conv(y, p["conv2"], 1, "same") + h)


def _residual_down(h, p):
    y = jax.nn.relu(_scaled_conv(h, p["conv1"], 2, "valid"))
    y = _scaled_conv(y, p["conv2"], 1, "same")
    n, hh, ww, c = h.shape
    ph, pw = hh // 2, ww // 2
    pooled = h[:, :2 * ph, :2 * pw].reshape(n, ph, 2, pw, 2, c).mean(axis=(2, 4))
    if pooled.shape[1:3] != y.shape[1:3]:
        y = jnp.pad(y, ((0, 0), (0, pooled.shape[1] - y.shape[1]),
                        (0, pooled.shape[2] - y.shape[2]), (0, 0)))
    if c != y.shape[3]:
        pooled = jnp.concatenate([pooled, jnp.zeros_like(pooled)], axis=3)
    return jax.nn.relu(pooled + y)


_RECOGNITION_STAGES = (("conv32", 32, 3, False), ("conv64", 64, 3, True),
                       ("conv128", 128, 2, True), ("conv256", 256, 2, True))


def face_descriptor(params, x) -> jax.Array:
    """[N, 3, 150, 150] preprocessed -> 128-d face descriptors [N, 128]."""
    h = _nhwc(x, RECOGNITION_SIZE, "face-recognition net")
    h = jax.nn.relu(_scaled_conv(h, params["conv32_down"], 2, "valid"))
    h = _max_pool3x3_s2(h, "valid")
    for name, _, blocks, down in _RECOGNITION_STAGES:
        if down:
            h = _residual_down(h, params[f"{name}_down"])
        for i in range(1, blocks + 1):
            h = _residual(h, params[f"{name}_{i}"])
    h = _residual_down(h, params["conv256_down_out"])
    return jnp.mean(h, axis=(1, 2)) @ params["fc"]


# ----------------------------------------------------------------------------- conversion

def _sep_shapes(prefix: str, cin: int, cout: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}/depthwise_filter": (3, 3, cin, 1),
            f"{prefix}/pointwise_filter": (1, 1, cin, cout), f"{prefix}/bias": (cout,)}


def _conv_shapes(prefix: str, k: int, cin: int, cout: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}/filters": (k, k, cin, cout), f"{prefix}/bias": (cout,)}


def age_gender_shapes() -> dict[str, tuple[int, ...]]:
    s = _conv_shapes("entry_flow/conv_in", 3, 3, 32)
    for prefix, cin, cout in (("entry_flow/reduction_block_0", 32, 64),
                              ("entry_flow/reduction_block_1", 64, 128),
                              ("exit_flow/reduction_block", 128, 256)):
        s |= _sep_shapes(f"{prefix}/separable_conv0", cin, cout)
        s |= _sep_shapes(f"{prefix}/separable_conv1", cout, cout)
        s |= _conv_shapes(f"{prefix}/expansion_conv", 1, cin, cout)
    for i in range(2):
        for j in range(3):
            s |= _sep_shapes(f"middle_flow/main_block_{i}/separable_conv{j}", 128, 128)
    s |= _sep_shapes("exit_flow/separable_conv", 256, 512)
    s |= {"fc/age/weights": (512, 1), "fc/age/bias": (1,),
          "fc/gender/weights": (512, 2), "fc/gender/bias": (2,)}
    return s


def expression_shapes() -> dict[str, tuple[int, ...]]:
    s = _conv_shapes("dense0/conv0", 3, 3, 32)
    cin = 32
    for i, c in enumerate((32, 64, 128, 256)):
        if i:
            s |= _sep_shapes(f"dense{i}/conv0", cin, c)
        for j in (1, 2, 3):
            s |= _sep_shapes(f"dense{i}/conv{j}", c, c)
        cin = c
    return s | {"fc/weights": (256, 7), "fc/bias": (7,)}


def recognition_shapes() -> dict[str, tuple[int, ...]]:
    def scaled(prefix, k, cin, cout):
        return (_conv_shapes(f"{prefix}/conv", k, cin, cout)
                | {f"{prefix}/scale/weights": (cout,), f"{prefix}/scale/biases": (cout,)})

    def residual(prefix, cin, cout):
        return scaled(f"{prefix}/conv1", 3, cin, cout) | scaled(f"{prefix}/conv2", 3, cout, cout)

    s = scaled("conv32_down", 7, 3, 32)
    cin = 32
    for name, c, blocks, down in _RECOGNITION_STAGES:
        if down:
            s |= residual(f"{name}_down", cin, c)
        for i in range(1, blocks + 1):
            s |= residual(f"{name}_{i}", c, c)
        cin = c
    return s | residual("conv256_down_out", 256, 256) | {"fc": (256, DESCRIPTOR_DIM)}


def params_from_weights(weights: dict[str, np.ndarray], shapes: dict[str, tuple[int, ...]],
                        what: str = "<tfjs weights>") -> dict[str, Any]:
    """Check that `weights` has exactly the names and shapes in `shapes`, then nest the
    '/'-separated names into a params pytree."""
    missing = sorted(set(shapes) - set(weights))
    extra = sorted(set(weights) - set(shapes))
    if missing or extra:
        raise UnsupportedWeightsError(f"{what}: not the face-api net ported here: missing "
                                      f"{missing[:5]}, unexpected {extra[:5]}")
    params: dict[str, Any] = {}
    for name, shape in shapes.items():
        w = weights[name]
        if tuple(w.shape) != shape:
            raise UnsupportedWeightsError(f"{what}: weight {name!r} has shape {w.shape}, "
                                          f"expected {shape}")
        node = params
        *path, leaf = name.split("/")
        for part in path:
            node = node.setdefault(part, {})
        node[leaf] = np.asarray(w, np.float32)
    return params


def convert(manifest: str | os.PathLike, net: str) -> dict[str, Any]:
    """face-api tfjs manifest (+ .bin) -> params pytree for net 'age_gender', 'expression' or
    'recognition'."""
    shapes = {"age_gender": age_gender_shapes, "expression": expression_shapes,
              "recognition": recognition_shapes}[net]()
    return params_from_weights(read_tfjs_weights(manifest), shapes, os.fspath(manifest))
