"""tlgan_jax: TL-GAN in JAX — attribute axes in a pretrained GAN's latent space.

    import jax, tlgan_jax as tl
    gen = tl.load_generator("digiface64")               # embedded default (DCGAN, 64×64)
    exts = [tl.load_extractor(n) for n in ("gender", "age")]
    samples = tl.sample(gen, exts, num=16384, seed=0)    # (z, y); images never stored
    y, binary = tl.method_targets("ols", samples.y, samples.binary)   # logits clipped to ±3
    axes = tl.fit_axes(samples.z, y, method="ols", names=samples.names, binary=binary,
                       key=jax.random.key(1))
    z2 = tl.edit_latents(gen, samples.z[:4], axes, {"male": 2.0}, lock=["age"])
    images = gen(z2)

The method's stages, one module (or package) each: generators (G), extractors (F),
sampling + store (z, y pairs), fit (z -> y linear models), axes (directions, lock),
editing (move z, judge edits), invert (photos -> z); discover runs them end to end.
"""
__version__ = "0.1.0"   # the single source: pyproject.toml reads it (dynamic version)

from tlgan_jax.axes import Axes, load_axes
from tlgan_jax.combine import Combination, combine_scores, parse_combine
from tlgan_jax.editing import edit_latents, render_traversal, traversal_latents
from tlgan_jax.extractors import (
                                  Extractor,
                                  FaceDescriptor,
                                  custom_extractor,
                                  descriptor_distance,
                                  identity_kept,
                                  load_extractor,
                                  load_face_descriptor,
)
from tlgan_jax.fit import fit_axes, fit_axes_in, method_targets
from tlgan_jax.generators import Generator, load_generator, to_uint8
from tlgan_jax.invert import InversionConfig, frame_face, invert, invert_photo
from tlgan_jax.sampling import Sampler, sample
from tlgan_jax.store import Samples, load_samples

__all__ = ["Axes", "Combination", "Extractor", "FaceDescriptor", "Generator", "InversionConfig",
           "Sampler", "Samples", "combine_scores", "custom_extractor", "descriptor_distance",
           "edit_latents", "fit_axes", "fit_axes_in", "frame_face", "identity_kept", "invert",
           "invert_photo", "load_axes", "load_extractor", "load_face_descriptor",
           "load_generator", "load_samples", "method_targets", "parse_combine",
           "render_traversal", "sample", "to_uint8", "traversal_latents"]
