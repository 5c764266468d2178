"""Real-photo editing: find a latent z whose image matches a photo x (GAN inversion).

With x framed like the generator's faces (`frame_face`) and G the generator:
    L(z) = ‖G(z) − x‖² / P                       pixel MSE (P = number of values)
         + w_low · ‖pool(G(z)) − pool(x)‖² / P_s  the same at low resolution (s×s box means)
         + λ · mean_a ((F_a(G(z)) − F_a(x)) / σ_a)²   feature loss: the extractors' own scores,
                                                   each divided by its spread σ_a over G's faces
         + w_prior · ‖z‖² / d                       Gaussian prior on z
    ẑ = argmin_z L(z) by Adam (cosine-decayed step) from `restarts` starts at once (vmap over
        starts and photos); the starts are the best of `init_pool` random z ~ N(0, I) by pixel
        loss, and the start with the lowest final L wins.
Optional per-photo refinement (pivotal tuning, Roich et al. 2022): with ẑ fixed, tune the
generator's parameters θ for that photo on the pixel terms plus w_anchor · mean((θ − θ₀)²)
(keeps G near the original, so edits still work). The refined θ is returned with the result
(`Inversion.params`); render with `gen.apply(result.params_for(i), z)`.
Quality: `psnr` (on [0, 1] images, dB) and `ssim` (Wang et al. 2004: Gaussian window σ=1.5,
11×11, K1=0.01, K2=0.03, per channel then averaged; equals scikit-image's
structural_similarity(gaussian_weights=True, use_sample_covariance=False, data_range=1)).
"""
from __future__ import annotations

import dataclasses
import functools
import io
from pathlib import Path
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from PIL import Image, ImageOps, UnidentifiedImageError

from tlgan_jax.extractors import Extractor, as_extractor, check_images, stack_scores
from tlgan_jax.generators import Generator, to_uint8

# Photos: limits on what `load_photo` decodes (a decompression bomb is refused before decoding).
MAX_PHOTO_PIXELS = 40_000_000
# Framing of the embedded DigiFace generator relative to a face detector's box (w = box side):
# the crop is a square of side FRAME_SCALE·w centred FRAME_SHIFT·w below the box centre.
FRAME_SCALE = 1.3
FRAME_SHIFT = 0.05


class PhotoError(ValueError):
    """A photo that cannot be used. reason: "not_image" (unreadable / not an image),
    "too_large" (over the pixel limit) or "invalid" (anything else: shape, box, …)."""

    def __init__(self, message: str, reason: str = "invalid"):
        super().__init__(message)
        self.reason = reason


# ----------------------------------------------------------------------------- configuration

@dataclasses.dataclass(frozen=True)
class InversionConfig:
    """Hyper-parameters of `invert` (defaults: the embedded 64×64 generator on a CPU)."""
    steps: int = 300                 # Adam steps on z
    restarts: int = 4                # starts optimised at once; the best is kept
    init_pool: int = 256             # random z scored by pixel loss; the best `restarts` start
    learning_rate: float = 0.2       # Adam step, cosine-decayed to `final_lr_fraction` of it
    final_lr_fraction: float = 0.02
    lowres: int = 16                 # side of the low-resolution pixel loss (0: off)
    lowres_weight: float = 0.5
    feature_weight: float = 0.02     # λ (0: no feature loss, and the extractors are not run)
    prior_weight: float = 1e-3
    refine_steps: int = 0            # per-photo generator refinement steps (0: off)
    refine_learning_rate: float = 3e-4
    anchor_weight: float = 1.0       # pull of the refined parameters towards the original

    def __post_init__(self):
        for name in ("steps", "restarts", "init_pool"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"InversionConfig.{name} must be at least 1, got "
                                 f"{getattr(self, name)}")
        if self.init_pool < self.restarts:
            raise ValueError(f"InversionConfig.init_pool ({self.init_pool}) must be at least "
                             f"restarts ({self.restarts})")
        for name in ("learning_rate", "lowres_weight", "feature_weight", "prior_weight",
                     "refine_learning_rate", "anchor_weight", "final_lr_fraction"):
            v = float(getattr(self, name))
            if not np.isfinite(v) or v < 0:
                raise ValueError(f"InversionConfig.{name} must be finite and >= 0, got {v}")
        if self.refine_steps < 0 or self.lowres < 0:
            raise ValueError("InversionConfig.refine_steps and lowres must be >= 0")


@dataclasses.dataclass(frozen=True)
class Inversion:
    """The result for N photos: z [N, d], images = G(z) [N, R, R, 3] in [-1, 1] (with the
    refined parameters when refining), targets [N, R, R, 3], loss [N] (final L of the kept
    start), start_losses [N, restarts], psnr / ssim [N] of images against targets, and
    params: the refined generator parameters, one pytree per photo (None without refinement)."""
    z: np.ndarray
    images: np.ndarray
    targets: np.ndarray
    loss: np.ndarray
    start_losses: np.ndarray
    psnr: np.ndarray
    ssim: np.ndarray
    params: list | None = None

    def params_for(self, i: int) -> Any:
        """Generator parameters for photo i (refined ones, or None without refinement)."""
        return None if self.params is None else self.params[i]


# ----------------------------------------------------------------------------- metrics

def _unit(images) -> jax.Array:
    return jnp.clip((jnp.asarray(images, jnp.float32) + 1.0) * 0.5, 0.0, 1.0)


def psnr(images, targets) -> np.ndarray:
    """PSNR in dB per image of [-1, 1] NHWC images, computed on [0, 1] (clipped) values."""
    a, b = _unit(images), _unit(targets)
    mse = jnp.mean(jnp.square(a - b), axis=(1, 2, 3))
    return np.asarray(-10.0 * jnp.log10(jnp.maximum(mse, 1e-12)))


def _gaussian_window(sigma: float = 1.5, truncate: float = 3.5) -> np.ndarray:
    r = int(truncate * sigma + 0.5)
    x = np.arange(-r, r + 1, dtype=np.float64)
    w = np.exp(-0.5 * (x / sigma) ** 2)
    return (w / w.sum()).astype(np.float32)


def ssim(images, targets) -> np.ndarray:
    """SSIM per image (Wang et al. 2004; see the module doc) of [-1, 1] NHWC images."""
    a, b = _unit(images), _unit(targets)
    w = jnp.asarray(_gaussian_window())
    k = w.shape[0]
    if a.shape[1] < k or a.shape[2] < k:
        raise ValueError(f"ssim needs images of at least {k}×{k}, got {a.shape[1:3]}")

    def blur(x):                                   # separable 'valid' Gaussian filter, NHWC
        n, h, wd, c = x.shape
        x = jnp.moveaxis(x, -1, 1).reshape(n * c, 1, h, wd)
        x = jax.lax.conv(x, w.reshape(1, 1, k, 1), (1, 1), "VALID",
                         precision=jax.lax.Precision.HIGHEST)
        x = jax.lax.conv(x, w.reshape(1, 1, 1, k), (1, 1), "VALID",
                         precision=jax.lax.Precision.HIGHEST)
        return x.reshape(n, c, *x.shape[2:])

    c1, c2 = 0.01 ** 2, 0.03 ** 2
    ux, uy = blur(a), blur(b)
    vx = blur(a * a) - ux * ux
    vy = blur(b * b) - uy * uy
    vxy = blur(a * b) - ux * uy
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return np.asarray(jnp.mean(s, axis=(1, 2, 3)))


# ----------------------------------------------------------------------------- photos

def _open_image(source) -> tuple[Image.Image, str]:
    """Pillow's lazy open (reads the header only) of a path or raw bytes: (image, name)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if not data:
            raise PhotoError("the photo is empty (0 bytes)", "not_image")
        stream, what = io.BytesIO(data), "the upload"
    else:
        path = Path(source)
        if not path.is_file():
            raise PhotoError(f"no such photo file: {path}")
        stream, what = io.BytesIO(path.read_bytes()), str(path)
    try:
        return Image.open(stream), what
    except Image.DecompressionBombError as e:
        raise PhotoError(f"{what} is too large: {e}", "too_large") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise PhotoError(f"{what} is not an image that Pillow can read (PNG, JPEG, WebP, "
                         f"…)", "not_image") from None


def _check_size(img: Image.Image, max_pixels: int) -> None:
    w, h = img.size
    if w * h > max_pixels:
        raise PhotoError(f"the photo is {w}×{h} = {w * h / 1e6:.1f} megapixels; the limit is "
                         f"{max_pixels / 1e6:g} megapixels", "too_large")
    if w < 8 or h < 8:
        raise PhotoError(f"the photo is only {w}×{h} pixels; at least 8×8 is needed")


def check_photo_header(source, *, max_pixels: int = MAX_PHOTO_PIXELS) -> None:
    """The checks of `load_photo` that need only the file's header (readable image, size
    limits), without decoding the pixels; raises PhotoError."""
    img, _ = _open_image(source)
    with img:
        _check_size(img, max_pixels)


def load_photo(source, *, max_pixels: int = MAX_PHOTO_PIXELS) -> np.ndarray:
    """A photo as uint8 RGB [H, W, 3] from a path, raw file bytes, a PIL image or an array
    (uint8 or [-1, 1] float, [H, W, 3] or [H, W]). EXIF orientation is applied; 16-bit grey
    is scaled to 8 bits. Raises PhotoError for anything that is not a readable image or has
    more than max_pixels pixels."""
    if isinstance(source, np.ndarray):
        return _array_photo(source)
    if isinstance(source, Image.Image):
        img, what = source, "the photo"
    else:
        img, what = _open_image(source)
    _check_size(img, max_pixels)
    try:
        img = ImageOps.exif_transpose(img)
        return _rgb8(img, what)
    except Image.DecompressionBombError as e:
        raise PhotoError(f"the photo is too large: {e}", "too_large") from None
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        raise PhotoError(f"the photo could not be decoded: {e}", "not_image") from None
    finally:
        if not isinstance(source, Image.Image):
            img.close()


def _rgb8(img: Image.Image, what: str) -> np.ndarray:
    """uint8 RGB [H, W, 3] of a decoded image. 16-bit grey (Pillow modes I;16*, or I with
    values in 0..65535) is scaled to 8 bits, v8 = round(v16 / 257), instead of Pillow's clip
    to 255 (which turns a 16-bit photo white); float images are refused (not_image)."""
    if img.mode.startswith("I;16") or img.mode == "I":
        v = np.asarray(img)
        if v.ndim != 2 or (v.size and (v.min() < 0 or v.max() > 65535)):
            raise PhotoError(f"{what} has 32-bit integer pixels ({img.mode}); save it as an "
                             f"8- or 16-bit PNG or a JPEG", "not_image")
        grey = np.round(v.astype(np.float32) / 257.0).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=-1)
    if img.mode == "F":
        raise PhotoError(f"{what} has floating-point pixels (mode F); save it as an 8- or "
                         f"16-bit PNG or a JPEG", "not_image")
    return np.asarray(img.convert("RGB"), np.uint8)


def _array_photo(a: np.ndarray) -> np.ndarray:
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=-1)
    if a.ndim != 3 or a.shape[-1] not in (3, 4):
        raise PhotoError(f"a photo array must be [H, W, 3] (or [H, W] grey), got shape {a.shape}")
    a = a[..., :3]
    if a.dtype == np.uint8:
        return a
    if not np.issubdtype(a.dtype, np.floating) or not np.all(np.isfinite(a)):
        raise PhotoError("a photo array must be uint8 or finite float in [-1, 1]")
    return to_uint8(a)


def detect_face(photo: np.ndarray) -> tuple[float, float, float] | None:
    """The largest frontal face in a uint8 photo as (centre x, centre y, side) in pixels, or
    None (no face, or scikit-image not installed). Uses scikit-image's LBP cascade on a copy
    at most 480 px wide; detections overlapping the largest one are averaged."""
    try:
        from skimage import data as skdata
        from skimage.feature import Cascade
    except ImportError:
        return None
    h, w = photo.shape[:2]
    scale = min(1.0, 480.0 / max(h, w))
    small = photo if scale == 1.0 else np.asarray(
        Image.fromarray(photo).resize((max(1, round(w * scale)), max(1, round(h * scale))),
                                      Image.BILINEAR))
    side = min(small.shape[:2])
    detector = Cascade(skdata.lbp_frontal_face_cascade_filename())
    found = detector.detect_multi_scale(img=small, scale_factor=1.2, step_ratio=1,
                                        min_size=(max(24, side // 10),) * 2,
                                        max_size=(side, side))
    if not found:
        return None
    boxes = np.array([[d["c"], d["r"], d["width"], d["height"]] for d in found], np.float64)
    big = boxes[np.argmax(boxes[:, 2] * boxes[:, 3])]

    def overlap(b):                               # intersection over the smaller box
        ix = max(0.0, min(b[0] + b[2], big[0] + big[2]) - max(b[0], big[0]))
        iy = max(0.0, min(b[1] + b[3], big[1] + big[3]) - max(b[1], big[1]))
        return ix * iy / min(b[2] * b[3], big[2] * big[3])

    group = boxes[[overlap(b) > 0.5 for b in boxes]]
    x, y, bw, bh = group.mean(axis=0) / scale
    return float(x + bw / 2), float(y + bh / 2), float(max(bw, bh))


def frame_face(photo, resolution: int, *, box: Sequence[float] | None = None,
               framing: str = "auto", max_pixels: int = MAX_PHOTO_PIXELS
               ) -> tuple[np.ndarray, dict]:
    """Crop and resize a photo to the generator's framing: ([R, R, 3] float32 in [-1, 1], info).

    box: (left, top, right, bottom) in pixels, used as given (then framing is ignored);
    framing: "auto" (detect a face and frame it like the DigiFace faces: a square of side
    FRAME_SCALE·w around the detected box; the centre square when no face is found),
    "center" (the largest centred square) or "full" (the whole photo, squashed to a square).
    Parts of the crop outside the photo repeat its edge pixels. A box of more than max_pixels
    pixels, or one far outside the photo, is refused. info: {"framing": what was
    done ("box", "detected", "center" or "full"), "box": [left, top, right, bottom]}.
    """
    photo = load_photo(photo, max_pixels=max_pixels)
    h, w = photo.shape[:2]
    if box is not None:
        box = [float(v) for v in box]
        if len(box) != 4 or not all(np.isfinite(box)) or box[2] <= box[0] or box[3] <= box[1]:
            raise PhotoError(f"box must be (left, top, right, bottom) with right > left and "
                             f"bottom > top, got {box}")
        how = "box"
    elif framing == "full":
        box, how = [0.0, 0.0, float(w), float(h)], "full"
    elif framing in ("auto", "center"):
        face = detect_face(photo) if framing == "auto" else None
        if face is not None:
            cx, cy, side = face
            cy += FRAME_SHIFT * side
            side *= FRAME_SCALE
            how = "detected"
        else:
            cx, cy, side, how = w / 2, h / 2, float(min(w, h)), "center"
        box = [cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2]
    else:
        raise PhotoError(f"framing must be 'auto', 'center' or 'full', got {framing!r}")
    left, top, right, bottom = (int(round(v)) for v in box)
    if max(0, -left, -top, right - w, bottom - h) > 4 * max(w, h):
        raise PhotoError(f"box {box} lies far outside the {w}×{h} photo")
    if (right - left) * (bottom - top) > max_pixels:
        raise PhotoError(f"box {box} covers {(right - left) * (bottom - top) / 1e6:.1f} "
                         f"megapixels; the limit is {max_pixels / 1e6:g} megapixels",
                         "too_large")
    # crop[i, j] = photo[clip(top + i), clip(left + j)]: the edge-padded crop, built from the
    # rows and columns inside the photo only (memory: the crop, never a padded photo)
    rows = np.clip(np.arange(top, bottom), 0, h - 1)
    cols = np.clip(np.arange(left, right), 0, w - 1)
    crop = photo[rows[:, None], cols[None, :]]
    out = np.asarray(Image.fromarray(crop).resize((resolution, resolution), Image.LANCZOS),
                     np.float32)
    return out / 127.5 - 1.0, {"framing": how, "box": [left, top, right, bottom]}


# ----------------------------------------------------------------------------- inversion

def _pool(images: jax.Array, size: int) -> jax.Array:
    """Box-mean NHWC images down to size×size (size must divide the resolution)."""
    n, h, w, c = images.shape
    return images.reshape(n, size, h // size, size, w // size, c).mean(axis=(2, 4))


class Inverter:
    """Inversion for one generator and a set of extractors, compiled once per batch size.

    inverter = Inverter(gen, extractors, InversionConfig(...))
    result = inverter(targets, key)         # targets [N, R, R, 3] in [-1, 1] (framed photos)
    """

    def __init__(self, gen: Generator, extractors: Sequence[Any] = (),
                 config: InversionConfig = InversionConfig(), *, scale_samples: int = 256,
                 key: jax.Array | None = None):
        self.gen = gen
        self.config = config
        self.extractors = tuple(as_extractor(e, gen.resolution) for e in extractors)
        if config.lowres and gen.resolution % config.lowres:
            raise ValueError(f"InversionConfig.lowres ({config.lowres}) must divide the "
                             f"generator's resolution {gen.resolution}")
        self.use_features = bool(self.extractors) and config.feature_weight > 0
        self.ext_params = [e.params for e in self.extractors] if self.use_features else []
        # σ_a: spread of each score over the generator's own faces (standardises the features)
        self.feature_scale = None
        if self.use_features:
            key = jax.random.key(12345) if key is None else key
            z = gen.sample_latents(key, scale_samples)
            feats = jax.jit(self._raw_features)(self.ext_params, gen(z))
            self.feature_scale = jnp.maximum(jnp.std(feats, axis=0), 1e-3)

    # -- pure pieces (all jittable) -----------------------------------------------------------
    def _raw_features(self, ext_params, images):
        return stack_scores(self.extractors, ext_params, images)

    def features(self, ext_params, images):
        """Standardised extractor scores [N, K] (the feature loss' space)."""
        return self._raw_features(ext_params, images) / self.feature_scale

    def pixel_loss(self, images, targets):
        """Pixel MSE plus the low-resolution term, per image [N]."""
        cfg = self.config
        loss = jnp.mean(jnp.square(images - targets), axis=(1, 2, 3))
        if cfg.lowres:
            lo = jnp.square(_pool(images, cfg.lowres) - _pool(targets, cfg.lowres))
            loss = loss + cfg.lowres_weight * jnp.mean(lo, axis=(1, 2, 3))
        return loss

    def loss(self, gen_params, ext_params, z, targets, target_features):
        """L per latent: z [N, d], targets [N, R, R, 3], target_features [N, K] -> [N]."""
        cfg = self.config
        images = self.gen.apply(gen_params, z)
        loss = self.pixel_loss(images, targets)
        loss = loss + cfg.prior_weight * jnp.mean(jnp.square(z), axis=-1)
        if self.use_features:
            f = self.features(ext_params, images)
            loss = loss + cfg.feature_weight * jnp.mean(jnp.square(f - target_features), -1)
        return loss

    def _schedule(self, steps, lr):
        return optax.cosine_decay_schedule(lr, max(1, steps), alpha=self.config.final_lr_fraction)

    # The optimisation loops run in Python over jitted steps: on XLA:CPU a loop inside jit
    # (lax.scan / fori_loop) runs these convolutions ~2-3x slower than the same step jitted.
    def _target_features(self, ext_params, targets):
        if self.use_features:
            return self.features(ext_params, targets)
        return jnp.zeros((targets.shape[0], 0), jnp.float32)

    def pool_losses(self, gen_params, z, target):
        """Pure: pixel loss of each of z [P, d] against one target [R, R, 3] -> [P]."""
        return self.pixel_loss(self.gen.apply(gen_params, z), target[None])

    def start_latents(self, gen_params, targets, key) -> jax.Array:
        """z0 [N, S, d]: per photo the best `restarts` of `init_pool` random z by pixel loss."""
        cfg, d = self.config, self.gen.latent_dim
        n = targets.shape[0]
        pool = self.gen.sample_latents(key, n * cfg.init_pool).reshape(n, cfg.init_pool, d)
        losses = jnp.stack([self._jit_pool(gen_params, pool[i], targets[i]) for i in range(n)])
        best = jnp.argsort(losses, axis=1)[:, :cfg.restarts]
        return jnp.take_along_axis(pool, best[..., None], axis=1)

    def start_losses(self, gen_params, ext_params, z, targets, target_features):
        """Pure: L for every start: z [N, S, d] -> [N, S]; vmapped over starts and photos, so
        each start is optimised on its own (Adam is elementwise)."""
        def one(zi, t, f):
            return self.loss(gen_params, ext_params, zi[None], t[None], f[None])[0]
        return jax.vmap(jax.vmap(one, (0, None, None)), (0, 0, 0))(z, targets, target_features)

    def _z_optimizer(self):
        return optax.adam(self._schedule(self.config.steps, self.config.learning_rate))

    def z_step(self, gen_params, ext_params, z, opt_state, targets, target_features):
        """Pure: one Adam step on every start -> (z, opt_state, losses [N, S] before it)."""
        def total(zz):
            losses = self.start_losses(gen_params, ext_params, zz, targets, target_features)
            return jnp.sum(losses), losses
        (_, losses), g = jax.value_and_grad(total, has_aux=True)(z)
        updates, opt_state = self._z_optimizer().update(g, opt_state, z)
        return optax.apply_updates(z, updates), opt_state, losses

    def pick_best(self, gen_params, ext_params, z, targets, target_features):
        """Pure: (z [N, d], loss [N], losses [N, S]) of the start with the lowest final L."""
        losses = self.start_losses(gen_params, ext_params, z, targets, target_features)
        pick = jnp.argmin(losses, axis=1)
        best = jnp.take_along_axis(z, pick[:, None, None], axis=1)[:, 0]
        return best, jnp.take_along_axis(losses, pick[:, None], axis=1)[:, 0], losses

    def _refine_optimizer(self):
        return optax.adam(self._schedule(self.config.refine_steps,
                                         self.config.refine_learning_rate))

    def refine_step(self, gen_params, theta, opt_state, z, target):
        """Pure: one Adam step of the generator parameters θ for ONE photo (z [d] fixed):
        pixel loss(G_θ(z), x) + w_anchor · mean((θ − θ₀)²), θ₀ = gen_params. (No feature
        loss here: tuning the weights against the extractors' scores makes artefacts.)"""
        cfg = self.config
        size = sum(p.size for p in jax.tree.leaves(gen_params))

        def objective(th):
            anchor = sum(jnp.sum(jnp.square(a - b)) for a, b in
                         zip(jax.tree.leaves(th), jax.tree.leaves(gen_params)))
            fit = self.pixel_loss(self.gen.apply(th, z[None]), target[None])[0]
            return fit + cfg.anchor_weight * anchor / size
        g = jax.grad(objective)(theta)
        updates, opt_state = self._refine_optimizer().update(g, opt_state, theta)
        return optax.apply_updates(theta, updates), opt_state

    @functools.cached_property
    def _jit_pool(self):
        return jax.jit(self.pool_losses)

    @functools.cached_property
    def _jit_features(self):
        return jax.jit(self._target_features)

    @functools.cached_property
    def _jit_z_step(self):
        return jax.jit(self.z_step, donate_argnums=(2, 3))

    @functools.cached_property
    def _jit_pick(self):
        return jax.jit(self.pick_best)

    @functools.cached_property
    def _jit_refine_step(self):
        return jax.jit(self.refine_step)

    @functools.cached_property
    def _jit_render(self):
        return jax.jit(lambda p, z: self.gen.apply(p, z))

    # -- public ------------------------------------------------------------------------------
    def check_targets(self, targets) -> jax.Array:
        r = self.gen.resolution
        targets = check_images(targets, "invert")
        if targets.shape[1:] != (r, r, 3):
            raise ValueError(f"invert: targets must be [N, {r}, {r}, 3] (the generator's "
                             f"resolution; use frame_face for photos), got shape "
                             f"{tuple(targets.shape)}")
        if targets.shape[0] < 1:
            raise ValueError("invert: no targets given")
        if not bool(jnp.all(jnp.isfinite(targets))):
            raise ValueError("invert: targets contain NaN or infinite values")
        return targets

    def warmup(self, n: int = 1) -> None:
        """Compile everything a call with n targets runs (two steps of each stage), so the
        first real inversion is not slow."""
        r = self.gen.resolution
        # two steps: the second call of a step function sees its own outputs (a new signature)
        self(jnp.zeros((n, r, r, 3), jnp.float32), jax.random.key(0), max_steps=2)

    def __call__(self, targets, key: jax.Array | None = None, *, refine: bool | None = None,
                 progress: Callable[[str, int, int], None] | None = None,
                 max_steps: int | None = None) -> Inversion:
        """Invert targets [N, R, R, 3] in [-1, 1]. refine: override the config (False: skip
        the refinement; True needs config.refine_steps > 0). progress(stage, done, total) is
        called after every step (stages "z" and "refine"). max_steps: stop each stage after
        this many steps (warm-up and smoke tests; the schedules stay those of the config)."""
        cfg = self.config
        if refine is not None and not refine:
            cfg = dataclasses.replace(cfg, refine_steps=0)
        elif refine and not cfg.refine_steps:
            raise ValueError("refine=True needs InversionConfig.refine_steps > 0")
        targets = self.check_targets(targets)
        key = jax.random.key(0) if key is None else key
        gp, ep = self.gen.params, self.ext_params
        tfeat = self._jit_features(ep, targets)
        z = self.start_latents(gp, targets, key)
        state = self._z_optimizer().init(z)
        z_steps = cfg.steps if max_steps is None else min(cfg.steps, max_steps)
        r_steps = cfg.refine_steps if max_steps is None else min(cfg.refine_steps, max_steps)
        for i in range(z_steps):
            z, state, _ = self._jit_z_step(gp, ep, z, state, targets, tfeat)
            if progress is not None:
                progress("z", i + 1, z_steps)
        z, loss, losses = self._jit_pick(gp, ep, z, targets, tfeat)
        params = None
        if cfg.refine_steps:
            tuned = []
            for j in range(targets.shape[0]):
                theta, rstate = gp, self._refine_optimizer().init(gp)
                for i in range(r_steps):
                    theta, rstate = self._jit_refine_step(gp, theta, rstate, z[j], targets[j])
                    if progress is not None:
                        progress("refine", j * r_steps + i + 1, targets.shape[0] * r_steps)
                tuned.append(theta)
            params = tuned
            images = jnp.concatenate([self._jit_render(t, z[j:j + 1])
                                      for j, t in enumerate(tuned)])
        else:
            images = self._jit_render(gp, z)
        return Inversion(z=np.asarray(z), images=np.asarray(images),
                         targets=np.asarray(targets), loss=np.asarray(loss),
                         start_losses=np.asarray(losses), psnr=psnr(images, targets),
                         ssim=ssim(images, targets), params=params)


def invert(gen: Generator, targets, extractors: Sequence[Extractor] = (),
           config: InversionConfig = InversionConfig(), *,
           key: jax.Array | None = None) -> Inversion:
    """Latents z with G(z) ≈ targets ([N, R, R, 3] in [-1, 1], framed like the generator's
    faces: see `frame_face`). Convenience for `Inverter(gen, extractors, config)(targets, key)`."""
    return Inverter(gen, extractors, config)(targets, key)


def invert_photo(gen: Generator, photo, extractors: Sequence[Extractor] = (),
                 config: InversionConfig = InversionConfig(), *, framing: str = "auto",
                 box: Sequence[float] | None = None, key: jax.Array | None = None,
                 inverter: Inverter | None = None) -> tuple[Inversion, dict]:
    """A photo (path, bytes, PIL image or array) -> (Inversion of its framed face, framing
    info from `frame_face`)."""
    target, info = frame_face(photo, gen.resolution, box=box, framing=framing)
    inverter = inverter or Inverter(gen, extractors, config)
    return inverter(target[None], key), info
