r"""Render traversal grids from an axes file: faces (rows) moved along each axis (columns).

  python experiments/traverse.py --axes=runs/discover/axes.npz --out=runs/traverse
  python experiments/traverse.py --axes=... --latents=faces.npy --attributes=male --lock=age
  python experiments/traverse.py --axes=runs/ffhq_w/axes.npz --layers=0:4   # coarse layers only

Faces come from --latents (a .npy [N, d] in the axes' latent space: z, or w / w+ for axes fitted
there) or are drawn with --seed (z, mapped into the axes' space). Writes one PNG per attribute.
--layers (W / W+ axes of a style-based generator) moves only those style inputs (GANSpace's
coarse 0:4, middle 4:8, fine 8:); the faces are then rendered from w+.
Defaults: configs/traverse.py.
"""
import jax
import numpy as np

from tlgan_jax import cli
from tlgan_jax.axes import Axes
from tlgan_jax.discover import write_traversals
from tlgan_jax.editing import parse_layers


def main(cfg):
    axes = Axes.load(cfg.axes)
    gen, _ = cli.load_models(cfg.generator_name(axes))
    gen = gen.in_space(axes.latent_space)
    cli.check_latents(axes, gen, "generator" if cfg.generator else "axes")
    layers = None
    if cfg.layers is not None:
        try:
            layers = parse_layers(cfg.layers, gen.w_space.num_ws)
        except ValueError as e:
            raise cli.ConfigError("layers", str(e), cfg.layers) from None
    if cfg.latents:
        z = cli.load_latents(cfg.latents, gen, "latents")
    else:
        z = np.asarray(gen.sample_latents(jax.random.key(cfg.seed), cfg.faces))
    for path in write_traversals(gen, axes, z, cfg.out, cfg.steps, cfg.attributes or None,
                                 cfg.lock, layers=layers, cell=cfg.cell or None):
        print(path)


if __name__ == "__main__":
    cli.run(main, cli.repo_config(__file__), doc=__doc__)
