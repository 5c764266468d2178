"""NVIDIA's StyleGAN2 generator `G_main` (skip architecture, config-f) as pure JAX functions.

Maths (official networks_stylegan2.py and upfirdn_2d.py; NHWC inside, params keep the stored
TF layouts and names):
  equalised lr: W_used = W · float32(1/√fan_in · lrmul), fan_in = prod(shape[:-1]);
                b_used = b · lrmul
  lrelu(x)  = max(x, 0.2·x) · √2 (bias added first)
  mapping:  x = z · rsqrt(mean(z²) + 1e-8); x = lrelu(x @ W_i + b_i), i < mapping_layers
            (lrmul 0.01 on weights and biases, the last layer too) -> w [N, D]
  w+        = w broadcast to num_layers = 2·log2(R) − 2 style inputs
  truncation: w+[:, l] = avg + (w+[:, l] − avg)·psi for l < cutoff (every l if cutoff is None);
            not applied at all when psi is 1 (or None)
  modconv:  s = w_l @ (A/√D) + a + 1 (the +1 is not stored); W' = W/√(k²·I) · s[i];
            demodulated: W'·rsqrt(Σ_{kh,kw,i} W'² + 1e-8) per (sample, out); k×k correlation
  layer:    x = lrelu(modconv(x) + noise·strength + b)   (noise [H, W], shared by the batch)
  ToRGB:    t = modconv(x) (1×1, no demodulation) + b
  skip:     y = ToRGB_4x4; per block R = 8..res: y = up2(y) + ToRGB_R(x)
  up2       = upfirdn2d(y, 4K, up 2, pad (2, 1)),  K = outer(k, k)/Σ, k = [1, 3, 3, 1]
  Conv0_up  = VALID 3×3 correlation with W of upfirdn2d(x, 4K, up 2, pad (3, 2)), which equals
            TF's conv2d_transpose(stride 2, VALID) with the flipped W then upfirdn2d(4K, pad (1, 1))
  upfirdn2d = zero-stuff (samples at even positions), pad, true convolution with K.
Style index of each layer: 4x4/Conv w[0], 4x4/ToRGB w[1]; at R = 2^r Conv0_up w[2r−5],
Conv1 w[2r−4], ToRGB w[2r−3]. Noise input j has size 2^((j+5)//2).

Exact rewrites (the fast path = bfloat16 + "activations" + "transposed"):
  modulation="activations": conv(x·s, W/√fan_in)·d with d = rsqrt(s² @ Σ_{kh,kw} W'² + 1e-8)
      instead of one conv per sample with its own weights (TF's fused_modconv=False form).
  upsample="transposed": TF's own order, conv2d_transpose(stride 2) of the flipped W and then
      the FIR on the O output channels; the transposed conv as its 4 output phases, one 2×2
      conv with 4·O outputs over x padded by 1 (taps: even (W0, W2), odd (0, W1) per axis),
      interleaved. 16·I·O MACs per input pixel (9 useful), no zero-stuffed tensor.
  upsample="subpixel": zero-stuff + 4×4 FIR + 3×3 correlation is a stride-2 transposed conv with
      the 6×6 kernel C = W * K4; its 4 output phases are 3×3 SAME correlations of x with
      C[a'::2, b'::2] (rows a'=1 for even, 0 for odd outputs): 36·I·O MACs per input pixel.
  upsample="faithful" (the README's form): upfirdn2d(x, 4K, up 2, pad (3, 2)) on the I input
      channels, then VALID 3×3 at 2H: 36·I·O MACs per input pixel plus the FIR.
"""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from tlgan_jax.generators.core import Generator, WSpace
from tlgan_jax.weights.safe_pickle import describe
from tlgan_jax.weights.stylegan2_pickle import StyleGAN2Network, StyleGAN2PickleError, is_constant

MODULATIONS = ("weights", "activations")
UPSAMPLES = ("faithful", "subpixel", "transposed")
NOISE_MODES = ("stored", "random")
_DN = ("NHWC", "HWIO", "NHWC")
_SQRT2 = float(np.float32(np.sqrt(2.0)))
_FIR_1D = np.array([1.0, 3.0, 3.0, 1.0]) / 4.0   # per-axis factor of 4K (gain 4 = factor²)
_HIGHEST = jax.lax.Precision.HIGHEST


@dataclasses.dataclass(frozen=True)
class StyleGAN2Config:
    """G_main / G_mapping / G_synthesis_stylegan2 hyper-parameters (defaults = the official
    defaults, which config-f networks use: only num_channels, resolution, label_size stored)."""
    resolution: int = 1024
    num_channels: int = 3
    latent_size: int = 512
    dlatent_size: int = 512
    mapping_layers: int = 8
    mapping_fmaps: int = 512
    mapping_lrmul: float = 0.01
    normalize_latents: bool = True
    fmap_base: int = 16384
    fmap_decay: float = 1.0
    fmap_min: int = 1
    fmap_max: int = 512

    def __post_init__(self):
        r = self.resolution
        if not (isinstance(r, int) and 4 <= r <= 2 ** 14 and r & (r - 1) == 0):
            raise ValueError(f"StyleGAN2 resolution must be a power of two in [4, 16384], got {r}")
        if not (isinstance(self.mapping_layers, int) and 1 <= self.mapping_layers <= 64):
            raise ValueError(f"StyleGAN2 mapping_layers must be an integer in [1, 64] (the "
                             f"official networks have 8), got {describe(self.mapping_layers)}")
        for name in ("num_channels", "latent_size", "dlatent_size",
                     "mapping_fmaps", "fmap_base", "fmap_min", "fmap_max"):
            v = getattr(self, name)
            if not (isinstance(v, int) and 1 <= v <= 2 ** 20):
                raise ValueError(f"StyleGAN2 {name} must be an integer in [1, 2^20], got "
                                 f"{describe(v)}")
        for name in ("mapping_lrmul", "fmap_decay"):
            v = getattr(self, name)
            if not (isinstance(v, float) and math.isfinite(v) and v > 0):
                raise ValueError(f"StyleGAN2 {name} must be a finite positive float, got "
                                 f"{describe(v)}")

    @property
    def resolution_log2(self) -> int:
        return self.resolution.bit_length() - 1

    @property
    def num_layers(self) -> int:
        """Style inputs of the synthesis network (w+ rows): 2·log2(R) − 2."""
        return 2 * self.resolution_log2 - 2

    def nf(self, stage: int) -> int:
        """Feature maps at `stage`, exactly G_synthesis_stylegan2's nf()."""
        return int(np.clip(int(self.fmap_base / (2.0 ** (stage * self.fmap_decay))),
                           self.fmap_min, self.fmap_max))

    def variable_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every variable of Gs, named as `Gs.vars` with NVIDIA ADA's component prefixes:
        own ('lod', 'dlatent_avg'), 'mapping/...', 'synthesis/...' (stored layouts)."""
        d, c = self.dlatent_size, self.num_channels
        shapes = {"lod": (), "dlatent_avg": (d,)}
        for i in range(self.mapping_layers):
            fin = self.latent_size if i == 0 else self.mapping_fmaps
            fout = d if i == self.mapping_layers - 1 else self.mapping_fmaps
            shapes[f"mapping/Dense{i}/weight"] = (fin, fout)
            shapes[f"mapping/Dense{i}/bias"] = (fout,)
        for j in range(self.num_layers - 1):
            r = 2 ** ((j + 5) // 2)
            shapes[f"synthesis/noise{j}"] = (1, 1, r, r)
        nf = self.nf
        shapes["synthesis/4x4/Const/const"] = (1, nf(1), 4, 4)

        def modconv(scope, k, fin, fout, noise):
            shapes[f"synthesis/{scope}/weight"] = (k, k, fin, fout)
            shapes[f"synthesis/{scope}/mod_weight"] = (d, fin)
            shapes[f"synthesis/{scope}/mod_bias"] = (fin,)
            if noise:
                shapes[f"synthesis/{scope}/noise_strength"] = ()
            shapes[f"synthesis/{scope}/bias"] = (fout,)

        modconv("4x4/Conv", 3, nf(1), nf(1), True)
        modconv("4x4/ToRGB", 1, nf(1), c, False)
        for r in range(3, self.resolution_log2 + 1):
            s = f"{2 ** r}x{2 ** r}"
            modconv(f"{s}/Conv0_up", 3, nf(r - 2), nf(r - 1), True)
            modconv(f"{s}/Conv1", 3, nf(r - 1), nf(r - 1), True)
            modconv(f"{s}/ToRGB", 1, nf(r - 1), c, False)
        return shapes


# config-f as trained by NVlabs/stylegan2 (e.g. stylegan2-ffhq-config-f.pkl): all defaults.
CONFIG_F_1024 = StyleGAN2Config()


def _coef(fan_in: int, lrmul: float = 1.0) -> np.float32:
    """TF's runtime_coef = he_std·lrmul (computed in float64) as the float32 it multiplies by."""
    return np.float32(1.0 / np.sqrt(fan_in) * lrmul)


def _lrelu(x):
    """fused_bias_act 'lrelu' after the bias: leaky_relu(x, 0.2)·√2."""
    return jnp.maximum(x * jnp.asarray(0.2, x.dtype), x) * jnp.asarray(_SQRT2, x.dtype)


# ----------------------------------------------------------------------------- mapping

def mapping(params, z, *, config: StyleGAN2Config):
    """G_mapping: z [N, latent_size] -> w [N, dlatent_size] float32 (before the broadcast)."""
    _check(z, (config.latent_size,), "latents z")
    x = jnp.asarray(z, jnp.float32)
    if config.normalize_latents:
        x = x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=1, keepdims=True) + 1e-8)
    lrmul = config.mapping_lrmul
    for i in range(config.mapping_layers):
        p = params["mapping"][f"Dense{i}"]
        w = p["weight"] * _coef(p["weight"].shape[0], lrmul)
        x = _lrelu(jnp.dot(x, w) + p["bias"] * np.float32(lrmul))
    return x


def broadcast(w, *, config: StyleGAN2Config):
    """w [N, D] -> w+ [N, num_layers, D] (G_mapping's dlatent_broadcast)."""
    return jnp.broadcast_to(w[:, None, :], (w.shape[0], config.num_layers, w.shape[1]))


def truncate(wp, dlatent_avg, psi: float | None = 1.0, cutoff: int | None = None):
    """G_main's truncation trick on w+ [N, L, D]: rows l < cutoff (all if None) move to
    avg + (w − avg)·psi; psi None or 1 leaves w+ untouched (as TF, which skips the op)."""
    psi, cutoff = check_truncation(psi, cutoff)
    if psi is None or psi == 1:
        return wp
    layer_psi = np.ones((1, wp.shape[1], 1), np.float32)
    rows = slice(None) if cutoff is None else slice(0, cutoff)
    layer_psi[:, rows] *= np.float32(psi)
    avg = jnp.asarray(dlatent_avg, jnp.float32)
    return avg + (wp - avg) * layer_psi


def check_truncation(psi, cutoff):
    """Validate truncation_psi (finite number or None) and truncation_cutoff (int >= 0 or None)."""
    if psi is not None:
        if isinstance(psi, bool) or not isinstance(psi, (int, float, np.floating, np.integer)) \
                or not math.isfinite(float(psi)):
            raise ValueError(f"truncation_psi must be a finite number or None, got {psi!r}")
        psi = float(psi)
    if cutoff is not None:
        if isinstance(cutoff, bool) or not isinstance(cutoff, (int, np.integer)) or cutoff < 0:
            raise ValueError(f"truncation_cutoff must be an integer >= 0 or None, got {cutoff!r}")
        cutoff = int(cutoff)
    return psi, cutoff


# ----------------------------------------------------------------------------- synthesis ops

def _upfirdn1d(x, k, up: int, pad0: int, pad1: int, axis: int):
    """upfirdn along one axis: zero-stuff by `up`, pad, true convolution with the taps k."""
    n = x.shape[axis]
    if up > 1:   # samples at multiples of `up`, zeros after each
        zeros = [jnp.zeros_like(x)] * (up - 1)
        x = jnp.stack([x, *zeros], axis=axis + 1)
        x = x.reshape(*x.shape[:axis], n * up, *x.shape[axis + 2:])
    pad = [(0, 0)] * x.ndim
    pad[axis] = (pad0, pad1)
    x = jnp.pad(x, pad)
    length = x.shape[axis] - len(k) + 1
    taps = np.asarray(k, np.float64)[::-1]                 # convolution = correlation, flipped
    out = None
    for t, c in enumerate(taps):
        term = jax.lax.slice_in_dim(x, t, t + length, axis=axis) * jnp.asarray(c, x.dtype)
        out = term if out is None else out + term
    return out


def upfirdn2d(x, k, up: int, pad0: int, pad1: int):
    """upfirdn_2d on NHWC with the separable kernel outer(k, k): per channel, zero-stuff by
    `up`, pad (pad0, pad1), true 2-D convolution (VALID); done one axis at a time
    (shifted multiply-adds: cheap on every backend). Pads are >= 0 here."""
    return _upfirdn1d(_upfirdn1d(x, k, up, pad0, pad1, 1), k, up, pad0, pad1, 2)


def _fir_kernel() -> np.ndarray:
    """Per-axis taps of 4K = outer([1,3,3,1])/64 × 4 (upsample_2d's gain factor²): [1,3,3,1]/4."""
    return _FIR_1D


def upsample_2d(y):
    """upsample_2d(y, k=[1,3,3,1]): upfirdn2d(up 2, 4K, pad (2, 1)); [N,H,W,C] -> [N,2H,2W,C]."""
    return upfirdn2d(y, _fir_kernel(), 2, 2, 1)


def _conv(x, w, padding, out_dtype=None):
    return jax.lax.conv_general_dilated(x, w, (1, 1), padding, dimension_numbers=_DN,
                                        preferred_element_type=out_dtype)


# per axis: even outputs read C rows (1, 3, 5), odd outputs rows (0, 2, 4), on input rows
# (i−1, i, i+1); C = W * k_axis (full convolution, length 6): T[a, j, s] = k_axis[row − s]
def _phase_taps() -> np.ndarray:
    t = np.zeros((2, 3, 3), np.float32)
    for a, rows in enumerate(((1, 3, 5), (0, 2, 4))):
        for j, m in enumerate(rows):
            for s in range(3):
                if 0 <= m - s < 4:
                    t[a, j, s] = _FIR_1D[m - s]
    return t


_PHASE_TAPS = _phase_taps()


def subpixel_kernel(w):
    """3×3 HWIO (or [N,3,3,I,O] per-sample) kernel of Conv0_up -> the [3,3,I,4·O] kernel of
    its 4 output phases; output channel block (a, b) gives out[2i+a, 2j+b]."""
    t = jnp.asarray(_PHASE_TAPS, w.dtype)
    k = jnp.einsum("ajs,blt,...stio->...jliabo", t, t, w, precision=_HIGHEST)
    return k.reshape(*k.shape[:-3], 4 * w.shape[-1])


# conv2d_transpose(stride 2) of the flipped W: out[2m] = x[m−1]·W[0] + x[m]·W[2],
# out[2m+1] = x[m]·W[1]; over x padded by 1 (rows m−1, m): even taps (W0, W2), odd (0, W1)
_TRANSPOSED_TAPS = np.array([[[1, 0, 0], [0, 0, 1]], [[0, 0, 0], [0, 1, 0]]], np.float32)


def transposed_kernel(w):
    """3×3 HWIO kernel -> the [2,2,I,4·O] kernel of the 4 phases of TF's stride-2 transposed
    conv with the flipped kernel (block (a, b) gives t[2m+a, 2n+b])."""
    t = jnp.asarray(_TRANSPOSED_TAPS, w.dtype)
    k = jnp.einsum("ajs,blt,stio->jliabo", t, t, w, precision=_HIGHEST)
    return k.reshape(*k.shape[:-3], 4 * w.shape[-1])


def interleave_phases(y, o: int):
    """[N, H, W, 4·O] (blocks (a, b)) -> [N, 2H, 2W, O] with out[2i+a, 2j+b] = block (a, b)."""
    n, h, w_, _ = y.shape
    y = y.reshape(n, h, w_, 2, 2, o).transpose(0, 1, 3, 2, 4, 5)
    return y.reshape(n, 2 * h, 2 * w_, o)


def _conv_any(x, w, up: bool, upsample: str, dtype, out_dtype):
    """k×k SAME correlation of x with the float32 HWIO kernel w, or (up) Conv0_up's
    upsampling conv in the chosen form; w is cast to `dtype` after any kernel algebra."""
    k = w.shape[0]
    if not up:
        return _conv(x, w.astype(dtype), ((k // 2, k // 2),) * 2, out_dtype)
    if upsample == "faithful":
        u = upfirdn2d(x, _fir_kernel(), 2, 3, 2)
        return _conv(u, w.astype(dtype), ((0, 0), (0, 0)), out_dtype)
    if upsample == "transposed":
        # TF's order: the stride-2 transposed conv (4 phases, 2×2 taps each, over x padded
        # by 1) to the (2H+2)² grid, whose last row/column is 0, then the FIR on O channels
        y = _conv(x, transposed_kernel(w).astype(dtype), ((1, 1), (1, 1)), out_dtype)
        return upfirdn2d(interleave_phases(y, w.shape[-1]), _fir_kernel(), 1, 1, 0)
    y = _conv(x, subpixel_kernel(w).astype(dtype), ((1, 1), (1, 1)), out_dtype)
    return interleave_phases(y, w.shape[-1])


def styles(p, w_l, dlatent_size: int):
    """Per-layer style s = w_l @ (A/√D) + a + 1, [N, I] float32 (modulated_conv2d_layer)."""
    return jnp.dot(w_l, p["mod_weight"] * _coef(dlatent_size)) + p["mod_bias"] + 1.0


def modulated_conv(x, w_l, p, *, demodulate: bool, up: bool = False, dlatent_size: int,
                   modulation: str = "weights", upsample: str = "faithful", dtype=jnp.float32):
    """modulated_conv2d_layer on NHWC x (compute `dtype`) -> float32 [N, H', W', O]."""
    wt = p["weight"]
    k, _, cin, _ = wt.shape
    wt = wt * _coef(k * k * cin)
    s = styles(p, w_l, dlatent_size)
    x = x.astype(dtype)
    if modulation == "weights":    # TF's fused_modconv=True: one kernel per sample
        ww = wt[None] * s[:, None, None, :, None]
        if demodulate:
            d = jax.lax.rsqrt(jnp.sum(jnp.square(ww), axis=(1, 2, 3)) + 1e-8)
            ww = ww * d[:, None, None, None, :]
        one = lambda xi, wi: _conv_any(xi[None], wi, up, upsample, dtype, jnp.float32)[0]
        return jax.vmap(one)(x, ww)
    xs = (x.astype(jnp.float32) * s[:, None, None, :]).astype(dtype)
    y = _conv_any(xs, wt, up, upsample, dtype, jnp.float32)
    if demodulate:
        sq = jnp.sum(jnp.square(wt), axis=(0, 1))                        # [I, O]
        d = jax.lax.rsqrt(jnp.dot(jnp.square(s), sq, precision=_HIGHEST) + 1e-8)
        y = y * d[:, None, None, :]
    return y


def noise_inputs(params, n: int, *, config: StyleGAN2Config, noise: str = "stored",
                 key: jax.Array | None = None) -> list:
    """The num_layers − 1 noise images, NHWC: stored [1, H, W, 1] (randomize_noise=False) or
    fresh N(0, 1) [n, H, W, 1] per sample and layer from `key` (randomize_noise=True)."""
    if noise not in NOISE_MODES:
        raise ValueError(f"noise must be one of {NOISE_MODES}, got {noise!r}")
    sp = params["synthesis"]
    count = config.num_layers - 1
    if noise == "stored":
        return [jnp.transpose(sp[f"noise{j}"], (0, 2, 3, 1)) for j in range(count)]
    if key is None:
        raise ValueError("noise='random' needs an explicit PRNG key (key=jax.random.key(seed))")
    keys = jax.random.split(key, count)
    return [jax.random.normal(keys[j], (n, 2 ** ((j + 5) // 2), 2 ** ((j + 5) // 2), 1),
                              jnp.float32) for j in range(count)]


def synthesis(params, wp, *, config: StyleGAN2Config, noise: str = "stored",
              key: jax.Array | None = None, dtype=jnp.float32, modulation: str = "weights",
              upsample: str = "faithful"):
    """G_synthesis_stylegan2 (skip): w+ [N, num_layers, D] -> images [N, R, R, C] float32 NHWC,
    unclipped. noise: 'stored' (deterministic) or 'random' (needs `key`)."""
    _check(wp, (config.num_layers, config.dlatent_size), "dlatents w+")
    if modulation not in MODULATIONS:
        raise ValueError(f"modulation must be one of {MODULATIONS}, got {modulation!r}")
    if upsample not in UPSAMPLES:
        raise ValueError(f"upsample must be one of {UPSAMPLES}, got {upsample!r}")
    wp = jnp.asarray(wp, jnp.float32)
    n, sp = wp.shape[0], params["synthesis"]
    noises = noise_inputs(params, n, config=config, noise=noise, key=key)
    opts = dict(dlatent_size=config.dlatent_size, modulation=modulation, upsample=upsample,
                dtype=dtype)

    def layer(x, idx, p, up=False):
        y = modulated_conv(x, wp[:, idx], p, demodulate=True, up=up, **opts)
        y = y + noises[idx] * p["noise_strength"]
        return _lrelu(y + p["bias"]).astype(dtype)

    def torgb(x, idx, p):
        return modulated_conv(x, wp[:, idx], p, demodulate=False, **opts) + p["bias"]

    const = jnp.transpose(sp["4x4"]["Const"]["const"], (0, 2, 3, 1))
    x = jnp.broadcast_to(const, (n, *const.shape[1:])).astype(dtype)
    x = layer(x, 0, sp["4x4"]["Conv"])
    y = torgb(x, 1, sp["4x4"]["ToRGB"])
    for r in range(3, config.resolution_log2 + 1):
        blk = sp[f"{2 ** r}x{2 ** r}"]
        x = layer(x, 2 * r - 5, blk["Conv0_up"], up=True)
        x = layer(x, 2 * r - 4, blk["Conv1"])
        y = upsample_2d(y) + torgb(x, 2 * r - 3, blk["ToRGB"])
    return y


def apply(params, z, *, config: StyleGAN2Config, truncation_psi: float | None = 1.0,
          truncation_cutoff: int | None = None, noise: str = "stored",
          key: jax.Array | None = None, dtype=jnp.float32, modulation: str = "weights",
          upsample: str = "faithful"):
    """G_main: z [N, latent_size] -> images [N, R, R, C] float32 NHWC, unclipped
    (= Gs.run(z, None, truncation_psi, truncation_cutoff, randomize_noise=noise=='random'),
    transposed to NHWC). Defaults are the faithful float32 path with psi 1 and stored noise."""
    wp = truncate(broadcast(mapping(params, z, config=config), config=config),
                  params["dlatent_avg"], truncation_psi, truncation_cutoff)
    return synthesis(params, wp, config=config, noise=noise, key=key, dtype=dtype,
                     modulation=modulation, upsample=upsample)


FAST = dict(dtype=jnp.bfloat16, modulation="activations", upsample="transposed")


def apply_fast(params, z, **kwargs):
    """`apply` on the fast path: bfloat16, modulation on the activations, Conv0_up as TF's
    transposed conv (4 phases) then the FIR."""
    return apply(params, z, **{**kwargs, **FAST})


def _check(a, trailing: tuple, what: str):
    shape = getattr(a, "shape", None)
    if shape is None or len(shape) != 1 + len(trailing) or tuple(shape[1:]) != trailing:
        want = ", ".join(["N", *map(str, trailing)])
        raise ValueError(f"StyleGAN2 {what} must have shape [{want}], got shape {shape}")


# ----------------------------------------------------------------------------- parameters

def params_from_variables(variables: dict, config: StyleGAN2Config):
    """Flat {'dlatent_avg', 'lod', 'mapping/Dense0/weight', 'synthesis/4x4/Conv/weight', ...}
    -> nested params (float32 jnp, stored layouts). Checks every name and shape against
    `config.variable_shapes()`; 'lod' (unused by the skip synthesis) is checked, not kept."""
    expected = config.variable_shapes()
    missing = sorted(set(expected) - set(variables))
    extra = sorted(set(variables) - set(expected))
    if missing or extra:
        raise ValueError(f"StyleGAN2 variables do not match G_main for {config}: missing "
                         f"{missing[:8]}{'...' if len(missing) > 8 else ''}, unexpected "
                         f"{extra[:8]}{'...' if len(extra) > 8 else ''}")
    params: dict = {}
    for name, shape in expected.items():
        v = variables[name]
        if tuple(np.shape(v)) != shape:
            raise ValueError(f"StyleGAN2 variable {name} has shape {tuple(np.shape(v))}, "
                             f"expected {shape} for {config}")
        if name == "lod":
            continue
        node = params
        *scopes, leaf = name.split("/")
        for s in scopes:
            node = node.setdefault(s, {})
        node[leaf] = jnp.asarray(np.asarray(v, np.float32))
    return params


def random_params(key: jax.Array, config: StyleGAN2Config = CONFIG_F_1024):
    """Random params as TF initialises them: weights N(0, 1/lrmul²) (mapping: std 100),
    const and noise inputs N(0, 1); biases, mod_bias, noise_strength, dlatent_avg 0."""
    shapes = sorted(config.variable_shapes().items())
    drawn = [(n, s) for n, s in shapes
             if n.endswith(("weight", "const")) or n.startswith("synthesis/noise")]
    sizes = [int(np.prod(s)) for _, s in drawn]
    flat = np.asarray(jax.random.normal(key, (sum(sizes),), jnp.float32))  # one small program
    offsets = np.cumsum([0] + sizes)
    variables = {n: np.zeros(s, np.float32) for n, s in shapes}
    for (n, s), o, k in zip(drawn, offsets, sizes):
        std = 1.0 / config.mapping_lrmul if n.startswith("mapping/") else 1.0
        variables[n] = flat[o:o + k].reshape(s) * np.float32(std)
    return params_from_variables(variables, config)


# ----------------------------------------------------------------------------- from the pickle

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


def from_network(net: StyleGAN2Network) -> tuple[dict, StyleGAN2Config]:
    """A loaded `StyleGAN2Network` (tlgan_jax.weights.stylegan2_pickle) -> (params, config).
    Every variable name and shape is checked against the config (StyleGAN2PickleError naming
    the file otherwise)."""
    config = config_from_kwargs(net.static_kwargs, net.mapping_kwargs, net.synthesis_kwargs,
                                net.what)
    try:
        return params_from_variables(net.variables, config), config
    except ValueError as e:
        raise StyleGAN2PickleError(f"{net.what}: {e}") from None


def config_from_kwargs(gs_kwargs: dict, mapping_kwargs: dict, synthesis_kwargs: dict,
                       what: str = "StyleGAN2 pickle") -> StyleGAN2Config:
    """StyleGAN2Config from the static_kwargs of Gs and its components, as the official code
    sees them: each component's own kwargs overridden by Gs's (G_main passes its **kwargs on
    at run time), official defaults where absent. Every kwarg must be known: those that shape
    the network are read and checked (label_size 0, architecture 'skip', lrelu, float32,
    resample_kernel [1,3,3,1]), run-time/training ones ignored (truncation_*, randomize_noise,
    fused_modconv, dlatent_avg_beta, style_mixing_prob, ...), anything else refused."""
    for net, kw in (("Gs", gs_kwargs), ("mapping", mapping_kwargs),
                    ("synthesis", synthesis_kwargs)):
        unknown = sorted(set(kw) - _KNOWN)
        if unknown:
            raise StyleGAN2PickleError(f"{what}: unknown {net} static_kwargs {unknown}: not an "
                                       f"official StyleGAN2 G_main network (or one whose extra "
                                       f"settings this reader cannot honour)")
    for key, func in _G_MAIN_FUNCS.items():
        if key in gs_kwargs and not is_constant(gs_kwargs[key], func):
            raise StyleGAN2PickleError(f"{what}: Gs {key}={describe(gs_kwargs[key])}; only "
                                       f"{func!r} is supported")
    for key in _MUST_BE_FALSE:
        for net, kw in (("Gs", gs_kwargs), ("mapping", mapping_kwargs),
                        ("synthesis", synthesis_kwargs)):
            if key in kw and not is_constant(kw[key], False):
                raise StyleGAN2PickleError(f"{what}: {net} static_kwargs "
                                           f"{key}={describe(kw[key])}; only inference "
                                           f"networks ({key}=False) are supported")
    passed = {k: v for k, v in gs_kwargs.items()
              if k not in _G_MAIN_IGNORED and k not in _G_MAIN_FUNCS}
    m = {**_MAPPING_DEFAULTS, **mapping_kwargs, **passed}
    s = {**_SYNTHESIS_DEFAULTS, "label_size": 0, **synthesis_kwargs, **passed}

    def fail(msg):
        raise StyleGAN2PickleError(f"{what}: {msg}")

    def integer(kw, key):
        v = kw[key]
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            fail(f"static_kwargs {key}={describe(v)} is not an integer")
        return int(v)

    def real(kw, key):
        v = kw[key]
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
            fail(f"static_kwargs {key}={describe(v)} is not a number")
        return float(v)

    if integer(m, "label_size") != 0 or integer(s, "label_size") != 0:
        fail(f"conditional StyleGAN2 (label_size={describe(m['label_size'])}) is not "
             f"supported; only unconditional networks (label_size 0, e.g. FFHQ) are")
    if not is_constant(s["architecture"], "skip"):
        fail(f"architecture {describe(s['architecture'])} is not supported; only 'skip' "
             f"(configs e and f, all released StyleGAN2 networks) is")
    for kw, key in ((m, "mapping_nonlinearity"), (s, "nonlinearity")):
        if not is_constant(kw[key], "lrelu"):
            fail(f"{key}={describe(kw[key])} is not supported; only 'lrelu'")
    for kw in (m, s):
        if not is_constant(kw["dtype"], "float32"):
            fail(f"dtype {describe(kw['dtype'])} is not supported; only 'float32'")
    rk = s["resample_kernel"]
    if not (isinstance(rk, (list, tuple)) and len(rk) == 4
            and all(not isinstance(v, bool) and isinstance(v, (int, float)) for v in rk)
            and [float(v) for v in rk] == [1.0, 3.0, 3.0, 1.0]):
        fail(f"resample_kernel {describe(rk)} is not supported; only [1, 3, 3, 1]")
    if not isinstance(m["normalize_latents"], bool):
        fail(f"static_kwargs normalize_latents={describe(m['normalize_latents'])} is not a bool")
    if integer(m, "dlatent_size") != integer(s, "dlatent_size"):
        fail(f"mapping dlatent_size {describe(m['dlatent_size'])} != synthesis dlatent_size "
             f"{describe(s['dlatent_size'])}")
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
        fail(f"mapping dlatent_broadcast {describe(m['dlatent_broadcast'])} != the synthesis "
             f"network's {config.num_layers} style inputs")
    return config


def style_weights(params) -> list:
    """The style (modulation) weights [w_dim, I], one per style input: every conv layer in
    order and the last ToRGB (SeFa's 'all' layers for StyleGAN2)."""
    syn = params["synthesis"]
    blocks = sorted((k for k in syn if k[0].isdigit()), key=lambda k: int(k.split("x")[0]))
    out = [syn["4x4"]["Conv"]["mod_weight"]]
    for b in blocks[1:]:
        out += [syn[b]["Conv0_up"]["mod_weight"], syn[b]["Conv1"]["mod_weight"]]
    return out + [syn[blocks[-1]]["ToRGB"]["mod_weight"]]


def first_layer(params):
    """The hook for SeFa in z: the mapping's first Dense weight [latent_dim, mapping_fmaps]."""
    return params["mapping"]["Dense0"]["weight"]


def as_generator(params, config: StyleGAN2Config, *, truncation_psi: float | None = 1.0,
                 truncation_cutoff: int | None = None, dtype=jnp.float32,
                 modulation: str = "activations", upsample: str = "transposed",
                 name: str = "stylegan2"):
    """Wrap as a `tlgan_jax.generators.Generator` with its `WSpace` (stored noise: gen(z) is
    deterministic). The truncation is part of the synthesis stage.

    Default forms: modulation on the activations and Conv0_up as TF's phase-split transposed
    conv + FIR, exact rewrites of the per-sample-weight form (parity ≤ 1e-5 on the fixtures).
    GPU throughput: dtype=jnp.bfloat16 (the fast path).
    """
    if modulation not in MODULATIONS:
        raise ValueError(f"modulation must be one of {MODULATIONS}, got {modulation!r}")
    if upsample not in UPSAMPLES:
        raise ValueError(f"upsample must be one of {UPSAMPLES}, got {upsample!r}")
    psi, cutoff = check_truncation(truncation_psi, truncation_cutoff)

    def map_fn(p, z):
        return mapping(p, z, config=config)

    def synth_fn(p, wp):
        wp = truncate(jnp.asarray(wp, jnp.float32), p["dlatent_avg"], psi, cutoff)
        return synthesis(p, wp, config=config, dtype=dtype, modulation=modulation,
                         upsample=upsample)

    def fn(p, z):
        return synth_fn(p, broadcast(map_fn(p, z), config=config))

    prior = "normal_pixelnorm" if config.normalize_latents else "normal"
    return Generator(name=name, latent_dim=config.latent_size, resolution=config.resolution,
                     params=params, apply=fn, latent_prior=prior,
                     info={"config": dataclasses.asdict(config), "dtype": jnp.dtype(dtype).name,
                           "modulation": modulation, "upsample": upsample, "noise": "stored",
                           "truncation_psi": psi, "truncation_cutoff": cutoff},
                     w_space=WSpace(w_dim=config.dlatent_size, num_ws=config.num_layers,
                                    mapping=map_fn, synthesis=synth_fn,
                                    style_weights=style_weights),
                     first_layer=first_layer, features=map_fn)   # in z: GANSpace on w = f(z)
