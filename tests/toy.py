"""A tiny, fast stand-in generator and extractor with known structure, for pipeline tests.

G(z) = tanh(z @ W) (or z @ W with linear=True) reshaped to [N, R, R, 3]; scores: mean
brightness `bright` (continuous) and
`redder` = mean(R - B) (binary, a logit-like score). Both are smooth functions of z.
"""
import jax
import jax.numpy as jnp

from tlgan_jax.extractors import custom_extractor
from tlgan_jax.generators import Generator


def toy_generator(latent_dim: int = 16, resolution: int = 8, seed: int = 0, width: int = 1,
                  linear: bool = False):
    k = jax.random.key(seed)
    w = jax.random.normal(k, (latent_dim, resolution * resolution * 3 * width)) / latent_dim ** 0.5

    def apply(params, z):
        x = z @ params["w"] if linear else jnp.tanh(z @ params["w"])
        x = x.reshape(z.shape[0], width, resolution, resolution, 3).mean(axis=1)
        return x

    return Generator(name="toy", latent_dim=latent_dim, resolution=resolution,
                     params={"w": w}, apply=apply)


def toy_scores(images):
    return {"bright": images.mean(axis=(1, 2, 3)),
            "redder": 10.0 * (images[..., 0] - images[..., 2]).mean(axis=(1, 2))}


def toy_extractor():
    return custom_extractor(toy_scores, ("bright", "redder"), name="toy", binary=(False, True))
