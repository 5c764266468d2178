"""tlgan_jax: TL-GAN in JAX — attribute axes in a pretrained GAN's latent space.

    import tlgan_jax as tl
    gen = tl.load_generator("digiface64")               # embedded default (DCGAN, 64×64)
    exts = [tl.load_extractor(n) for n in ("gender", "age")]
    samples = tl.sample(gen, exts, num=16384, seed=0)    # (z, y); images never stored
    axes = tl.fit_axes(samples.z, samples.y, method="ols", names=samples.names)
    z2 = tl.edit_latents(gen, samples.z[:4], axes, {"male": 2.0}, lock=["age"])
    images = gen(z2)

Names are imported on first use (so `import tlgan_jax` stays cheap).
"""
from tlgan_jax.lazy import lazy_getattr

_EXPORTS = {
    "Axes": "axes", "load_axes": "axes",
    "edit_latents": "editing", "render_traversal": "editing", "traversal_latents": "editing",
    "Extractor": "extractors", "custom_extractor": "extractors",
    "FaceDescriptor": "extractors", "descriptor_distance": "extractors",
    "identity_kept": "extractors",
    "fit_axes": "fit",
    "InversionConfig": "invert", "invert": "invert", "invert_photo": "invert",
    "frame_face": "invert",
    "Generator": "generators", "to_uint8": "generators",
    "Sampler": "sampling", "Samples": "sampling", "sample": "sampling",
    "load_samples": "shards",
    "load_extractor": "zoo", "load_face_descriptor": "zoo", "load_generator": "zoo",
}
__all__ = sorted(_EXPORTS)


__getattr__ = lazy_getattr(__name__, globals(), _EXPORTS)
