"""The CelebA-40 attribute extractor (TL-GAN's MobileNet v1 net) as an `Extractor`.

  raw_apply(variables, x) = tanh(a), x NCHW [N, 3, 128, 128] in [-1, 1], a = CelebA40Net(x)
      the 40 pre-tanh values; variables = {"params", "batch_stats"} (inference-mode BN);
  preprocess(images)      = NHWC [-1, 1] images, anti-aliased resize to 128×128, -> NCHW
      (TL-GAN fed whole generator images, decimated to 128, to the net: no face crop);
  scores(y)               = arctanh(clip(y, tanh(-3), tanh(3))), TL-GAN's regression target:
      the pre-tanh value a clipped to [-3, 3]; label = score > 0 (binary for all 40).
Weights come from `tlgan_jax.train_extractor` (trained here from scratch on CelebA).
"""
from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from tlgan_jax import extractors
from tlgan_jax.train_extractor import (ModelConfig, checkpoint_directory, init_variables,
                                       read_model_config, restore_variables)

NAME = "celeba40"
SCORE_CLIP = 3.0


def _nchw_to_nhwc(x):
    return jnp.transpose(x, (0, 2, 3, 1))


def make_celeba40(variables: dict, model_config: ModelConfig,
                  info: Optional[dict] = None) -> extractors.Extractor:
    """Wrap trained (or random) variables {params, batch_stats} as an Extractor."""
    module = model_config.module()
    size = model_config.image_size
    lo, hi = float(np.tanh(-SCORE_CLIP)), float(np.tanh(SCORE_CLIP))

    def raw_apply(variables, x):
        return jnp.tanh(module.apply(variables, _nchw_to_nhwc(x), train=False))

    def preprocess(images):
        return jnp.transpose(extractors.resize_antialiased(images, size), (0, 3, 1, 2))

    def scores(y):
        return jnp.arctanh(jnp.clip(y, lo, hi))

    k = model_config.num_attributes
    return extractors.Extractor(
        name=NAME, attributes=tuple(model_config.attributes), input_shape=(3, size, size),
        params=variables, raw_apply=raw_apply, preprocess=preprocess, scores=scores,
        binary=(True,) * k, info=dict(model_config.to_json(), **(info or {})))


def load_celeba40(checkpoint_dir: str, step: Optional[int] = None) -> extractors.Extractor:
    """A working directory of `train_extractor` (or its checkpoints/ folder) -> Extractor,
    with the latest checkpoint unless `step` is given."""
    ckpt_dir = checkpoint_directory(checkpoint_dir)
    model_config = read_model_config(ckpt_dir)
    variables, step = restore_variables(ckpt_dir, step, model_config)
    return make_celeba40(variables, model_config,
                         info={"checkpoint": ckpt_dir, "step": step})


def random_celeba40(key: jax.Array, alpha: float = 1.0) -> extractors.Extractor:
    """Random (untrained) weights, for benchmarks and shape tests."""
    model_config = ModelConfig(alpha=alpha)
    return make_celeba40(init_variables(model_config, key), model_config,
                         info={"checkpoint": None})
