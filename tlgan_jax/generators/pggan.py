"""NVIDIA's pg-GAN generator `G_paper` (Karras et al. 2018) in flax.linen, with a fast path.

Maths (official `networks.py`, structure='linear'; NHWC inside, params keep the TF names):
  nf(s)  = min(int(fmap_base / 2^(s·fmap_decay)), fmap_max)
  PN(x)  = x · rsqrt(mean_c(x²) + 1e-8)        act(x) = max(0.2·x, x)
  w_used = w_stored · float32(gain / sqrt(fan_in)), fan_in = prod(shape[:-1])
           (Conv0_up: fan_in = 9·C_in); gain √2, Dense √2/4, ToRGB 1
  4×4:   x = PN(z); x = reshape(x @ W, [N, nf, 4, 4]) (NCHW row-major) + b; x = PN(act(x))
         x = PN(act(conv3×3(x) + b))
  2^r:   x = PN(act(conv3×3(up2(x)) + b))    [fused_scale: transposed 4×4 stride-2 conv,
         x = PN(act(conv3×3(x) + b))          kernel = sum of the 4 shifts of the padded 3×3]
  image: img_r = conv1×1(x_r) + b (ToRGB_lod{R-r});
         images = lerp_clip(img_r, up2(images), lod - (R-r))
                = img + (up2(images) - img)·clip(t, 0, 1)
Output [N, R, R, C] float32, unclipped (nominal [-1, 1]).

Exact shortcut: where t = clip(lod - (R-r), 0, 1) is statically 0 (all levels for the released
lod = 0 networks), img + (prev - img)·0 = img, so the dead ToRGB/upsample/lerp chain below it is
not built. Fast path (`dtype=bfloat16`, `conv0="subpixel"`): nearest-up2 + conv3×3 equals a
4-phase sub-pixel conv: out[2i+a, 2j+b] is a 2×2 conv of x whose taps are sums of 3×3 taps
(per axis, phase 0: (k0, k1+k2) on rows (i-1, i); phase 1: (k0+k1, k2) on rows (i, i+1)):
4/9 of the FLOPs and no upsampled tensor. Pixel-norm statistics and ToRGB accumulate in float32.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import re
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from tlgan_jax.generators.core import Generator
from tlgan_jax.weights.pggan_pickle import PgganNetwork, PgganPickleError
from tlgan_jax.weights.safe_pickle import describe

CONV0_MODES = ("faithful", "nearest", "subpixel", "transposed")
_DN = ("NHWC", "HWIO", "NHWC")


@dataclasses.dataclass(frozen=True)
class PgganConfig:
    """G_paper hyper-parameters (defaults are G_paper's own) plus the stored `lod`."""
    resolution: int = 1024
    num_channels: int = 3
    latent_size: int = 512
    fmap_base: int = 8192
    fmap_decay: float = 1.0
    fmap_max: int = 512
    normalize_latents: bool = True
    use_wscale: bool = True
    use_pixelnorm: bool = True
    use_leakyrelu: bool = True
    pixelnorm_epsilon: float = 1e-8
    fused_scale: bool = False
    lod: float = 0.0

    def __post_init__(self):
        r = self.resolution
        if r < 4 or r & (r - 1):
            raise ValueError(f"pg-GAN resolution must be a power of two >= 4, got {r}")
        if not math.isfinite(self.lod):
            raise ValueError(f"pg-GAN lod must be finite, got {self.lod}")

    @property
    def resolution_log2(self) -> int:
        return int(round(math.log2(self.resolution)))

    def nf(self, stage: int) -> int:
        """Feature maps at `stage` (resolution 2^(stage+1)), exactly G_paper's nf()."""
        return min(int(self.fmap_base / (2.0 ** (stage * self.fmap_decay))), self.fmap_max)

    def variable_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every trainable variable G_paper creates, TF name -> shape (stored layout)."""
        nf, r2 = self.nf, self.resolution_log2
        shapes = {"4x4/Dense/weight": (self.latent_size, nf(1) * 16), "4x4/Dense/bias": (nf(1),),
                  "4x4/Conv/weight": (3, 3, nf(1), nf(1)), "4x4/Conv/bias": (nf(1),)}
        for res in range(3, r2 + 1):
            s = f"{2 ** res}x{2 ** res}"
            if self.fused_scale:
                shapes[f"{s}/Conv0_up/weight"] = (3, 3, nf(res - 1), nf(res - 2))
                shapes[f"{s}/Conv0_up/bias"] = (nf(res - 1),)
            else:
                shapes[f"{s}/Conv0/weight"] = (3, 3, nf(res - 2), nf(res - 1))
                shapes[f"{s}/Conv0/bias"] = (nf(res - 1),)
            shapes[f"{s}/Conv1/weight"] = (3, 3, nf(res - 1), nf(res - 1))
            shapes[f"{s}/Conv1/bias"] = (nf(res - 1),)
        for res in range(2, r2 + 1):
            shapes[f"ToRGB_lod{r2 - res}/weight"] = (1, 1, nf(res - 1), self.num_channels)
            shapes[f"ToRGB_lod{r2 - res}/bias"] = (self.num_channels,)
        return shapes

    def lerp_t(self, res: int) -> float:
        """clip(lod_in - lod_res, 0, 1) for the level of resolution 2^res, in float32 as TF does."""
        t = np.float32(self.lod) - np.float32(self.resolution_log2 - res)
        return float(np.clip(t, np.float32(0), np.float32(1)))


# NVIDIA's released CelebA-HQ network (karras2018iclr-celebahq-1024x1024.pkl).
CELEBAHQ_1024 = PgganConfig(resolution=1024, num_channels=3, latent_size=512, fmap_base=8192,
                            fmap_max=512, fused_scale=False, lod=0.0)


def _wscale(cfg: PgganConfig, gain: float, fan_in: int) -> float:
    return float(np.float32(gain / np.sqrt(fan_in))) if cfg.use_wscale else 1.0


def _pixel_norm(x, cfg: PgganConfig, dtype):
    """x · rsqrt(mean over channels of x² + eps); the statistic in float32."""
    if not cfg.use_pixelnorm:
        return x
    x32 = x.astype(jnp.float32)
    return (x32 * jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True)
                                + cfg.pixelnorm_epsilon)).astype(dtype)


def _normalize_latents(z, cfg: PgganConfig):
    """PN(z) in float32 when the network normalises its latents (G_paper's first step)."""
    x = jnp.asarray(z, jnp.float32)
    if not cfg.normalize_latents:
        return x
    return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=1, keepdims=True)
                             + cfg.pixelnorm_epsilon)


def _act(x, cfg: PgganConfig):
    return jnp.maximum(x * jnp.asarray(0.2, x.dtype), x) if cfg.use_leakyrelu else jax.nn.relu(x)


def _upscale2d(x):
    """Nearest ×2 on NHWC (G_paper's tile-based upscale2d)."""
    n, h, w, c = x.shape
    x = jnp.broadcast_to(x[:, :, None, :, None, :], (n, h, 2, w, 2, c))
    return x.reshape(n, 2 * h, 2 * w, c)


def _conv(x, w, padding, out_dtype=None, lhs_dilation=(1, 1)):
    return jax.lax.conv_general_dilated(x, w, (1, 1), padding, lhs_dilation=lhs_dilation,
                                        dimension_numbers=_DN, preferred_element_type=out_dtype)


# Rows of the 2×2 phase kernels as sums of 3×3 taps: phase 0 reads input rows (i-1, i) with
# taps (k0, k1+k2); phase 1 reads rows (i, i+1) with taps (k0+k1, k2).
_PHASE_TAPS = np.array([[[1, 0, 0], [0, 1, 1]], [[1, 1, 0], [0, 0, 1]]], np.float32)


def subpixel_kernel(k3):
    """3×3 HWIO kernel applied after nearest-up2 -> [2, 2, I, 4·O] kernel of the 4 phases.

    Output channel block (a, b) holds the phase producing out[2i+a, 2j+b].
    """
    m = jnp.asarray(_PHASE_TAPS, k3.dtype)
    k = jnp.einsum("arh,bsw,hwio->rsiabo", m, m, k3, precision=jax.lax.Precision.HIGHEST)
    return k.reshape(2, 2, k3.shape[2], 4 * k3.shape[3])


def upsample_conv3x3_subpixel(x, k3, out_dtype=None):
    """conv3×3_SAME(up2(x), k3) computed as one 2×2 conv (4·O channels) + phase interleave."""
    n, h, w, _ = x.shape
    o = k3.shape[3]
    y = _conv(x, subpixel_kernel(k3).astype(x.dtype), ((1, 1), (1, 1)), out_dtype)
    y = y.reshape(n, h + 1, w + 1, 2, 2, o)
    rows = [jnp.stack([y[:, a:a + h, b:b + w, a, b] for b in (0, 1)], axis=3) for a in (0, 1)]
    return jnp.stack(rows, axis=2).reshape(n, 2 * h, 2 * w, o)


def fused_kernel(k3):
    """pg-GAN's fused_scale kernel: pad the 3×3 by 1 and sum its 4 shifts -> 4×4."""
    k = jnp.pad(k3, ((1, 1), (1, 1), (0, 0), (0, 0)))
    return k[1:, 1:] + k[:-1, 1:] + k[1:, :-1] + k[:-1, :-1]


def conv_transpose_stride2(x, w4_ooi):
    """tf.nn.conv2d_transpose(x, w4, 2×size, strides 2, SAME) with w4 stored [4, 4, out, in].

    out[y] = Σ_i x[i] · w4[y - 2i + 1]: a correlation of the 2-dilated input with the
    spatially flipped kernel, padded by 2 on each side.
    """
    rhs = jnp.flip(w4_ooi, (0, 1)).transpose(0, 1, 3, 2)
    return _conv(x, rhs.astype(x.dtype), ((2, 2), (2, 2)), lhs_dilation=(2, 2))


class LatentDense(nn.Module):
    """4x4/Dense: z @ W (gain √2/4), reshaped NCHW-row-major to [N, 4, 4, nf] NHWC, + bias."""
    fmaps: int
    cfg: PgganConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        w = self.param("weight", nn.initializers.normal(1.0), (x.shape[-1], self.fmaps * 16))
        b = self.param("bias", nn.initializers.zeros, (self.fmaps,))
        scale = _wscale(self.cfg, np.sqrt(2) / 4, x.shape[-1])
        w = (w.astype(jnp.float32) * scale).astype(self.dtype)
        y = jnp.dot(x.astype(self.dtype), w, preferred_element_type=jnp.float32)
        y = y.reshape(-1, self.fmaps, 4, 4).transpose(0, 2, 3, 1)
        return (y + b.astype(jnp.float32)).astype(self.dtype)


class Conv(nn.Module):
    """k×k conv, SAME, equalised learning rate, + bias. Output in `out_dtype` (default dtype)."""
    fmaps: int
    kernel: int
    gain: float
    cfg: PgganConfig
    dtype: Any = jnp.float32
    out_dtype: Any = None

    @nn.compact
    def __call__(self, x):
        k, c = self.kernel, x.shape[-1]
        w = self.param("weight", nn.initializers.normal(1.0), (k, k, c, self.fmaps))
        b = self.param("bias", nn.initializers.zeros, (self.fmaps,))
        w = (w.astype(jnp.float32) * _wscale(self.cfg, self.gain, k * k * c)).astype(self.dtype)
        out_dtype = self.out_dtype or self.dtype
        pad = ((k // 2, k // 2),) * 2
        y = _conv(x.astype(self.dtype), w, pad, out_dtype=out_dtype)
        return y + b.astype(out_dtype)


class UpConv(nn.Module):
    """Conv0 (nearest up2 then 3×3, weight [3,3,in,out]) or Conv0_up (fused_scale: transposed
    stride-2 conv with the 4×4 padded-summed kernel, weight [3,3,out,in], fan_in 9·in), + bias.

    mode: "faithful" = what the network does; "nearest" = up2 + 3×3 conv; "subpixel" = 4-phase
    2×2 conv; "transposed" = 4×4 stride-2 transposed conv. All four are the same function.
    """
    fmaps: int
    cfg: PgganConfig
    mode: str = "faithful"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        c, fused = x.shape[-1], self.cfg.fused_scale
        shape = (3, 3, self.fmaps, c) if fused else (3, 3, c, self.fmaps)
        w = self.param("weight", nn.initializers.normal(1.0), shape)
        b = self.param("bias", nn.initializers.zeros, (self.fmaps,))
        w = w.astype(jnp.float32) * _wscale(self.cfg, np.sqrt(2), 9 * c)
        x = x.astype(self.dtype)
        mode = self.mode
        if mode == "faithful":
            mode = "transposed" if fused else "nearest"
        if mode == "transposed":
            w4 = fused_kernel(w if fused else jnp.flip(w, (0, 1)).transpose(0, 1, 3, 2))
            y = conv_transpose_stride2(x, w4.astype(self.dtype))
        else:
            # the 3×3 HWIO kernel that, applied after nearest up2, equals the layer
            k3 = jnp.flip(w, (0, 1)).transpose(0, 1, 3, 2) if fused else w
            if mode == "nearest":
                y = _conv(_upscale2d(x), k3.astype(self.dtype), ((1, 1), (1, 1)))
            else:
                y = upsample_conv3x3_subpixel(x, k3)
        return y + b.astype(y.dtype)


class Block(nn.Module):
    """One resolution 2^res of G_paper (scope '4x4', '8x8', ...): its two conv layers."""
    res: int
    cfg: PgganConfig
    dtype: Any = jnp.float32
    conv0: str = "faithful"

    @nn.compact
    def __call__(self, x):
        cfg, dt, nf = self.cfg, self.dtype, self.cfg.nf(self.res - 1)
        sqrt2 = float(np.sqrt(2))
        if self.res == 2:
            x = _pixel_norm(_act(LatentDense(nf, cfg, dt, name="Dense")(x), cfg), cfg, dt)
            return _pixel_norm(_act(Conv(nf, 3, sqrt2, cfg, dt, name="Conv")(x), cfg), cfg, dt)
        name0 = "Conv0_up" if cfg.fused_scale else "Conv0"
        x = _pixel_norm(_act(UpConv(nf, cfg, self.conv0, dt, name=name0)(x), cfg), cfg, dt)
        return _pixel_norm(_act(Conv(nf, 3, sqrt2, cfg, dt, name="Conv1")(x), cfg), cfg, dt)


class GPaper(nn.Module):
    """G_paper: latents [N, latent_size] -> images [N, R, R, num_channels] float32 (NHWC)."""
    config: PgganConfig
    dtype: Any = jnp.float32
    conv0: str = "faithful"

    @nn.compact
    def __call__(self, z):
        cfg, dt, r2 = self.config, self.dtype, self.config.resolution_log2
        x = _normalize_latents(z, cfg)
        # a level with t == 0 discards the images below it (img + (prev - img)·0 = img), so
        # the image chain starts at the last such level: earlier ToRGBs are dead code
        start = max([r for r in range(3, r2 + 1) if cfg.lerp_t(r) == 0.0], default=2)
        images = None
        for res in range(2, r2 + 1):
            x = Block(res, cfg, dt, self.conv0, name=f"{2 ** res}x{2 ** res}")(x)
            if res < start:
                continue
            img = Conv(cfg.num_channels, 1, 1.0, cfg, dt, jnp.float32,
                       name=f"ToRGB_lod{r2 - res}")(x)
            if images is None:
                images = img
            else:
                t = jnp.float32(cfg.lerp_t(res))
                images = img + (_upscale2d(images) - img) * t
        return images


def _check_z(z, config: PgganConfig):
    shape = getattr(z, "shape", None)
    if shape is None or len(shape) != 2 or shape[1] != config.latent_size:
        raise ValueError(f"pg-GAN latents must have shape [N, {config.latent_size}], got shape "
                         f"{shape}")


def apply(params, z, *, config: PgganConfig, dtype=jnp.float32, conv0: str = "faithful"):
    """G_paper forward: z [N, latent_size] -> images [N, R, R, C] float32 NHWC, unclipped.

    dtype: compute dtype (float32 = faithful; bfloat16 = fast). conv0: how the upsampling
    conv runs, one of CONV0_MODES (all exact rewrites of each other; "faithful" mirrors TF).
    """
    if conv0 not in CONV0_MODES:
        raise ValueError(f"conv0 must be one of {CONV0_MODES}, got {conv0!r}")
    _check_z(z, config)
    out = GPaper(config, dtype, conv0).apply({"params": params}, z)
    return out.astype(jnp.float32)


def apply_fast(params, z, *, config: PgganConfig):
    """The fast path: bfloat16 compute and Conv0 as a 4-phase 2×2 sub-pixel conv."""
    return apply(params, z, config=config, dtype=jnp.bfloat16, conv0="subpixel")


def params_from_variables(variables: dict, config: PgganConfig):
    """TF variable dict {'8x8/Conv0/weight': array, ...} -> nested params (float32 jnp).

    Checks the names and shapes against `config.variable_shapes()`; 'lod' is config, not a param.
    """
    expected = config.variable_shapes()
    names = set(variables) - {"lod"}
    missing = sorted(set(expected) - names)
    extra = sorted(names - set(expected))
    if missing or extra:
        raise ValueError(f"pg-GAN variables do not match G_paper for {config}: missing "
                         f"{missing[:8]}{'...' if len(missing) > 8 else ''}, unexpected "
                         f"{extra[:8]}{'...' if len(extra) > 8 else ''}")
    params: dict = {}
    for name, shape in expected.items():
        v = np.asarray(variables[name])
        if v.shape != shape:
            raise ValueError(f"pg-GAN variable {name} has shape {v.shape}, expected {shape} "
                             f"for {config}")
        node = params
        *scopes, leaf = name.split("/")
        for s in scopes:
            node = node.setdefault(s, {})
        node[leaf] = jnp.asarray(v, jnp.float32)
    return params


def from_network(net: PgganNetwork) -> tuple[dict, PgganConfig]:
    """A loaded `PgganNetwork` (tlgan_jax.weights.pggan_pickle) -> (params for `apply`, config).
    Every variable name and shape is checked against the config."""
    config = config_from_network(net)
    try:
        return params_from_variables(net.variables, config), config
    except (ValueError, TypeError, OverflowError, ZeroDivisionError) as e:
        raise PgganPickleError(f"{net.what}: {e}") from None


# G_paper's keyword defaults (networks.py) for keys a pickle may omit.
_G_PAPER_DEFAULTS = dict(num_channels=1, label_size=0, fmap_base=8192, fmap_decay=1.0,
                         fmap_max=512, latent_size=None, normalize_latents=True,
                         use_wscale=True, use_pixelnorm=True, pixelnorm_epsilon=1e-8,
                         use_leakyrelu=True, dtype="float32", fused_scale=True)
# The type of each G_paper keyword used here (a value of another type is refused).
_KINDS = dict(num_channels=int, resolution=int, label_size=int, fmap_base=int,
              fmap_decay=float, fmap_max=int, latent_size=int, normalize_latents=bool,
              use_wscale=bool, use_pixelnorm=bool, pixelnorm_epsilon=float, use_leakyrelu=bool,
              dtype=str, fused_scale=bool)
# Larger than any published pg-GAN (1024): a file cannot ask for renders of unbounded size.
MAX_RESOLUTION = 8192


def _setting(kw: dict, key: str, what: str):
    """static_kwargs[key] (or G_paper's default), checked against its type in `_KINDS`."""
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


def config_from_network(net: PgganNetwork) -> PgganConfig:
    """G_paper config from static_kwargs (G_paper's defaults where absent, each type-checked)
    and the variable shapes; raises PgganPickleError naming the file when they disagree."""
    kwargs, variables, what = net.static_kwargs, net.variables, net.what
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


def random_params(key: jax.Array, config: PgganConfig = CELEBAHQ_1024):
    """Random G_paper params as TF initialises them: weights N(0, 1) (wscale), biases 0."""
    shapes = sorted(config.variable_shapes().items())
    sizes = [int(np.prod(s)) if n.endswith("weight") else 0 for n, s in shapes]
    # one flat draw (one small compiled program; per-shape draws take seconds to compile)
    flat = np.asarray(jax.random.normal(key, (sum(sizes),), jnp.float32))
    offsets = np.cumsum([0] + sizes)
    variables = {n: (flat[o:o + k].reshape(s) if k else np.zeros(s, np.float32))
                 for (n, s), o, k in zip(shapes, offsets, sizes)}
    return params_from_variables(variables, config)


def first_layer(params) -> jax.Array:
    """Generator hook (generators.core): W [latent_size, 16·nf] of the first layer, the stored
    `4x4/Dense/weight` (SeFa's weight; the equalised-lr constant does not change the
    eigenvectors)."""
    return jnp.asarray(params["4x4"]["Dense"]["weight"], jnp.float32)


def features(params, z, *, config: PgganConfig):
    """Generator hook (generators.core): the first layer's output PN(act(dense(PN(z))))
    [N, 4·4·nf] (NHWC, flattened), in float32 as `GPaper` computes it."""
    nf = config.nf(1)
    with jax.default_matmul_precision("highest"):
        h = LatentDense(nf, config, name="Dense").apply({"params": params["4x4"]["Dense"]},
                                                        _normalize_latents(z, config))
    h = _pixel_norm(_act(h, config), config, jnp.float32)
    return h.reshape(h.shape[0], -1)


def as_generator(params, config: PgganConfig, *, dtype=jnp.float32, conv0: str = "faithful",
                 name: str = "pggan") -> Generator:
    """Wrap as a `tlgan_jax.generators.Generator` (latent prior normal_pixelnorm).

    GPU throughput: dtype=jnp.bfloat16, conv0="subpixel". CPU: float32 with conv0="subpixel"
    (CPUs have no fast bf16 convolutions; see docs/pggan_notes.md).
    """
    if conv0 not in CONV0_MODES:
        raise ValueError(f"conv0 must be one of {CONV0_MODES}, got {conv0!r}")

    def fn(p, z):
        return apply(p, z, config=config, dtype=dtype, conv0=conv0)

    prior = "normal_pixelnorm" if config.normalize_latents else "normal"
    return Generator(name=name, latent_dim=config.latent_size, resolution=config.resolution,
                     params=params, apply=fn, latent_prior=prior,
                     info={"config": dataclasses.asdict(config), "dtype": jnp.dtype(dtype).name,
                           "conv0": conv0},
                     first_layer=first_layer,
                     features=functools.partial(features, config=config))
