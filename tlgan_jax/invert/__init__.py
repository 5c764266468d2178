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
Quality: `metrics.psnr` and `metrics.ssim`. Photos are decoded and framed by `photos`.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from tlgan_jax.extractors import Extractor, as_extractor, check_images, stack_scores
from tlgan_jax.generators import Generator
from tlgan_jax.invert.photos import (
    MAX_PHOTO_PIXELS,
    PhotoError,
    detect_face,
    frame_face,
    load_photo,
)
from tlgan_jax.metrics import psnr, ssim

__all__ = ["MAX_PHOTO_PIXELS", "Inversion", "InversionConfig", "Inverter", "PhotoError",
           "detect_face", "frame_face", "invert", "invert_photo", "load_photo", "psnr", "ssim"]

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
