r"""Render traversal grids from an axes file: faces (rows) moved along each axis (columns).

  python experiments/traverse.py --axes=runs/discover/axes.npz --out=runs/traverse
  python experiments/traverse.py --axes=... --latents=faces.npy --attributes=male --lock=age

Faces come from --latents (a .npy [N, d]) or are drawn with --seed. Writes one PNG per
attribute. Defaults: configs/traverse.py.
"""
import jax
import numpy as np

from tlgan_jax import cli
from tlgan_jax.axes import Axes
from tlgan_jax.discover import write_traversals


def main(cfg):
    axes = Axes.load(cfg.axes)
    gen, _ = cli.load_models(cfg.generator or axes.metadata["generator"])
    cli.check_latents(axes, gen, "generator" if cfg.generator else "axes")
    if cfg.latents:
        z = cli.load_latents(cfg.latents, gen, "latents")
    else:
        z = np.asarray(gen.sample_latents(jax.random.key(cfg.seed), cfg.faces))
    for path in write_traversals(gen, axes, z, cfg.out, cfg.steps, cfg.attributes or None,
                                 cfg.lock, cell=cfg.cell or None):
        print(path)


if __name__ == "__main__":
    cli.run(main, cli.repo_config(__file__), doc=__doc__)
