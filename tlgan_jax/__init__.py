"""tlgan_jax: TL-GAN in JAX."""
