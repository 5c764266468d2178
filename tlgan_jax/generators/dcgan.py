"""DigiFace DCGAN generator (`gan-face-generate`, the PyTorch DCGAN tutorial's G), in JAX.

PyTorch: z [N, 100, 1, 1] -> 5 x ConvTranspose2d(k=4, bias=False), strides 1,2,2,2,2,
pads 0,1,1,1,1, channels 100 -> 512 -> 256 -> 128 -> 64 -> 3; BatchNorm2d (eval: running
stats, eps 1e-5) + ReLU after the first four, tanh after the last. Output [N, 3, 64, 64].

A transposed conv (stride s, pad p) scatters every input pixel through the kernel:
    out[s*iy - p + ky, s*ix - p + kx, o] += x[iy, ix, i] * W[i, o, ky, kx].
Eval-mode BatchNorm is folded (in float64) into the kernel and a bias:
    k = W * g / sqrt(v + eps),  b = beta - m * g / sqrt(v + eps).

Here (NHWC inside and out, z [N, 100] -> images [N, 64, 64, 3] in [-1, 1]):
  - layer 1 (1x1 -> 4x4, p=0) is a matmul: [N, 100] @ [100, 4*4*512];
  - a stride-2 layer (k4, p1, H -> 2H) splits by output phase (a, b) in {0,1}^2: with xp
    the input zero-padded by one pixel and taps ky(a, t) = 3 - a - 2t,
        out[2m+a, 2n+b] = sum_{t,u in {0,1}} xp[m+a+t, n+b+u] . W[:, :, ky(a,t), ky(b,u)],
    i.e. ONE 2x2 valid conv of xp to 4*Cout channels (all phases' kernels side by side),
    read at offset (a, b) and interleaved ("sub-pixel", `conv_transpose_s2k4p1`): exact, no
    zeros multiplied, (1 + 1/H)^2 of the layer's FLOPs. Used for 8->16 and 16->32; for 4->8
    and 32->64 XLA's lhs-dilated conv with the flipped kernel (`conv_transpose_dilated`) is
    faster on CPU. Both are exact reformulations (checked against each other in the tests).
Parameters (`convert_state_dict`): {'project': {'kernel' [100, 4, 4, 512], 'bias' [512]},
'up1'..'up3': {'kernel' [4, 4, Cin, Cout], 'bias' [Cout]}, 'to_rgb': {'kernel', 'bias'}};
kernels are in PyTorch's scatter tap order k[ky, kx, i, o] = W[i, o, ky, kx] (BN folded).
"""
from __future__ import annotations

import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from tlgan_jax.generators.core import Generator
from tlgan_jax.weights.torch_zip import load_torch_zip

LATENT_DIM = 100
RESOLUTION = 64
BN_EPS = 1e-5
# (torch conv index, torch BN index or None, our layer name); channels 100,512,256,128,64,3
_LAYERS = (("main.0", "main.1", "project"), ("main.3", "main.4", "up1"),
           ("main.6", "main.7", "up2"), ("main.9", "main.10", "up3"), ("main.12", None, "to_rgb"))
_CHANNELS = (LATENT_DIM, 512, 256, 128, 64, 3)
_PHASE_TAPS = np.array([[3, 1], [2, 0]])  # [a, t] -> ky = 3 - a - 2t


def conv_transpose_s2k4p1(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """PyTorch ConvTranspose2d(k=4, stride=2, pad=1) on NHWC x, sub-pixel form (see module doc).

    x [N, H, W, Cin], kernel [4, 4, Cin, Cout] in scatter order -> [N, 2H, 2W, Cout].
    """
    n, h, w, cin = x.shape
    cout = kernel.shape[-1]
    taps = _PHASE_TAPS.T                                     # [t, a]
    phase_kernel = kernel[taps[:, None, :, None], taps[None, :, None, :]]  # [t, u, a, b, I, O]
    phase_kernel = jnp.transpose(phase_kernel, (0, 1, 4, 2, 3, 5)).reshape(2, 2, cin, 4 * cout)
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    y = jax.lax.conv_general_dilated(xp, phase_kernel, window_strides=(1, 1), padding="VALID",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    y = y.reshape(n, h + 1, w + 1, 2, 2, cout)
    rows = [jnp.stack([y[:, a:a + h, b:b + w, a, b] for b in range(2)], axis=3)  # [N,H,W,2b,C]
            for a in range(2)]
    return jnp.stack(rows, axis=2).reshape(n, 2 * h, 2 * w, cout)  # [N, H, 2a, W, 2b, C]


def conv_transpose_dilated(x: jax.Array, kernel: jax.Array, stride: int, pad: int) -> jax.Array:
    """PyTorch ConvTranspose2d as XLA's lhs-dilated conv with the flipped kernel (reference form).

    x NHWC, kernel [k, k, Cin, Cout] in scatter order: out = conv(dilate_s(x), flip(kernel))
    with padding k - 1 - pad on every side; size (H - 1) * s - 2 * pad + k.
    """
    k = kernel.shape[0]
    return jax.lax.conv_general_dilated(
        x, kernel[::-1, ::-1], window_strides=(1, 1),
        padding=((k - 1 - pad, k - 1 - pad), (k - 1 - pad, k - 1 - pad)),
        lhs_dilation=(stride, stride), dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _dcgan_init(key, shape, dtype=jnp.float32):
    """DCGAN's weight init N(0, 0.02^2) (only for random-weight use; real weights are loaded)."""
    return 0.02 * jax.random.normal(key, shape, dtype)


class Project(nn.Module):
    """z [N, Cin] -> [N, 4, 4, Cout]: ConvTranspose2d(k4, s1, p0) on a 1x1 input is a matmul."""
    features: int

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        kernel = self.param("kernel", _dcgan_init, (z.shape[-1], 4, 4, self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        y = z @ kernel.reshape(z.shape[-1], -1)
        return y.reshape(z.shape[0], 4, 4, self.features) + bias


class UpConv(nn.Module):
    """ConvTranspose2d(k4, s2, p1) + bias on NHWC: [N, H, W, Cin] -> [N, 2H, 2W, Cout].

    method: "subpixel" (`conv_transpose_s2k4p1`) or "dilated" (`conv_transpose_dilated`);
    same maths, chosen per layer for speed.
    """
    features: int
    method: str = "subpixel"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param("kernel", _dcgan_init, (4, 4, x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        if self.method == "subpixel":
            return conv_transpose_s2k4p1(x, kernel) + bias
        if self.method == "dilated":
            return conv_transpose_dilated(x, kernel, stride=2, pad=1) + bias
        raise ValueError(f"UpConv.method must be 'subpixel' or 'dilated', got {self.method!r}")


class DCGANGenerator(nn.Module):
    """z [N, 100] -> images [N, 64, 64, 3] NHWC in [-1, 1] (eval-mode BN folded into biases)."""

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        if z.ndim != 2 or z.shape[-1] != LATENT_DIM:
            raise ValueError(f"DCGAN generator: latents must have shape [N, {LATENT_DIM}], got "
                             f"{tuple(z.shape)} (PyTorch's [N, {LATENT_DIM}, 1, 1] is flattened)")
        x = nn.relu(Project(_CHANNELS[1], name="project")(z))                 # [N, 4, 4, 512]
        x = nn.relu(UpConv(_CHANNELS[2], "dilated", name="up1")(x))           # 8x8x256
        x = nn.relu(UpConv(_CHANNELS[3], "subpixel", name="up2")(x))          # 16x16x128
        x = nn.relu(UpConv(_CHANNELS[4], "subpixel", name="up3")(x))          # 32x32x64
        return jnp.tanh(UpConv(_CHANNELS[5], "dilated", name="to_rgb")(x))    # 64x64x3


def apply(params, z: jax.Array) -> jax.Array:
    """Images [N, 64, 64, 3] float32 (NHWC, tanh range) for latents z [N, 100]; pure, jittable."""
    return DCGANGenerator().apply({"params": params}, z)


def first_layer(params) -> jax.Array:
    """Generator hook (generators.core): W [100, 4·4·512] of the first layer h = z·W + b, the
    `project` kernel flattened in (y, x, c) order (eval-mode BatchNorm folded in)."""
    kernel = jnp.asarray(params["project"]["kernel"], jnp.float32)
    return kernel.reshape(kernel.shape[0], -1)


def features(params, z: jax.Array) -> jax.Array:
    """Generator hook (generators.core): the first feature map relu(project(z)) [N, 4·4·512]
    (flattened (y, x, c)), exactly as `DCGANGenerator` computes it."""
    with jax.default_matmul_precision("highest"):
        h = Project(_CHANNELS[1]).apply({"params": params["project"]}, jnp.asarray(z, jnp.float32))
    return nn.relu(h).reshape(h.shape[0], -1)


def as_generator(params, name: str = "dcgan", info: dict | None = None) -> Generator:
    """Wrap DCGAN params as a `Generator` (z ~ N(0, I_100), 64×64) with the SeFa/GANSpace hooks."""
    return Generator(name=name, latent_dim=LATENT_DIM, resolution=RESOLUTION, params=params,
                     apply=apply, latent_prior="normal", info=dict(info or {}),
                     first_layer=first_layer, features=features)


def init(key: jax.Array):
    """Random parameters with the layout of `convert_state_dict` (DCGAN init, zero biases)."""
    return DCGANGenerator().init(key, jnp.zeros((1, LATENT_DIM), jnp.float32))["params"]


def convert_state_dict(state_dict) -> dict:
    """PyTorch `netG_state_dict` (numpy arrays, keys main.{0,1,3,...,12}.*) -> params pytree.

    Folds each eval-mode BatchNorm2d into the preceding transposed conv in float64, then casts
    to float32; kernels go from torch [Cin, Cout, kh, kw] to scatter order (see module doc).
    Raises ValueError naming a missing key or a wrong shape.
    """
    def get(key, shape):
        if key not in state_dict:
            raise ValueError(f"DCGAN state dict: missing key {key!r} (got keys "
                             f"{sorted(state_dict)[:8]}...)")
        value = np.asarray(state_dict[key], np.float64)
        if value.shape != shape:
            raise ValueError(f"DCGAN state dict: {key!r} has shape {value.shape}, expected "
                             f"{shape} (Generator(nc=3, nz=100, ngf=64))")
        return value

    params = {}
    for (conv, bn, name), cin, cout in zip(_LAYERS, _CHANNELS[:-1], _CHANNELS[1:]):
        weight = get(f"{conv}.weight", (cin, cout, 4, 4))
        if bn is None:
            scale, bias = np.ones(cout), np.zeros(cout)
        else:
            gamma, beta = get(f"{bn}.weight", (cout,)), get(f"{bn}.bias", (cout,))
            mean, var = get(f"{bn}.running_mean", (cout,)), get(f"{bn}.running_var", (cout,))
            scale = gamma / np.sqrt(var + BN_EPS)
            bias = beta - mean * scale
        folded = weight * scale[None, :, None, None]
        kernel = folded.transpose(0, 2, 3, 1) if name == "project" else folded.transpose(2, 3, 0, 1)
        params[name] = {"kernel": kernel.astype(np.float32), "bias": bias.astype(np.float32)}
    return params


def load(weights_path: str | os.PathLike) -> dict:
    """Params from the `gan-face-generate` checkpoint (weights.tar, a torch zip; no torch
    needed)."""
    checkpoint = load_torch_zip(weights_path)
    if not isinstance(checkpoint, dict) or "netG_state_dict" not in checkpoint:
        keys = sorted(checkpoint) if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise ValueError(f"{weights_path}: no 'netG_state_dict' in the checkpoint (found {keys})")
    return convert_state_dict(checkpoint["netG_state_dict"])
