r"""Render traversal grids from an axes file: faces (rows) moved along each axis (columns).

  python experiments/traverse.py --axes=runs/discover/axes.npz --out=runs/traverse
  python experiments/traverse.py --axes=... --latents=faces.npy --attributes=male --lock=age
  python experiments/traverse.py --axes=runs/ffhq_w/axes.npz --layers=0:4   # coarse layers only

Faces come from --latents (a .npy [N, d] in the axes' latent space: z, or w / w+ for axes fitted
there) or are drawn with --seed (z, mapped into the axes' space). Writes one PNG per attribute.
--layers (W / W+ axes of a style-based generator) moves only those style inputs (GANSpace's
coarse 0:4, middle 4:8, fine 8:); the faces are then rendered from w+.
"""
from pathlib import Path

import jax
import numpy as np
from absl import app, flags

from tlgan_jax.axes import Axes, models_named_by_axes
from tlgan_jax.editing import edit_directions, render_traversal
from tlgan_jax.plots import image_grid, save_png
from tlgan_jax.generators import load_generator

FLAGS = flags.FLAGS
flags.DEFINE_string("axes", None, "Path of an axes.npz written by discover_axes.py.", required=True)
flags.DEFINE_string("generator", None,
                    "Generator to render with (default: the one named in the axes file).")
flags.DEFINE_string("out", "runs/traverse", "Output directory for the PNG grids.")
flags.DEFINE_list("attributes", [], "Attributes to traverse (default: all in the axes file).")
flags.DEFINE_list("lock", [], "Attributes to keep fixed (TL-GAN lock: axes made orthogonal).")
flags.DEFINE_string("latents", None, "A .npy file of latents [N, d] (default: draw --faces).")
flags.DEFINE_integer("faces", 6, "Number of faces drawn with --seed when --latents is not given.")
flags.DEFINE_integer("seed", 0, "Seed for drawing faces.")
flags.DEFINE_list("steps", ["-3", "-2", "-1", "0", "1", "2", "3"], "Steps along each axis.")
flags.DEFINE_integer("cell", 0, "Pixel size of each cell (0: the image size, at least 96).")
flags.DEFINE_string("layers", None, "Style inputs to edit, START:STOP (W / W+ axes only; "
                    "e.g. 0:4 coarse, 4:8 middle, 8: fine); default: all of them.")


def parse_layers(text: str | None, num_ws: int) -> list[int] | None:
    """'START:STOP' (either end may be empty) -> the style-input indices; None for None."""
    if text is None:
        return None
    parts = text.split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        start = int(parts[0]) if parts[0] else 0
        stop = int(parts[1]) if parts[1] else num_ws
    except ValueError:
        raise app.UsageError(f"--layers must be START:STOP (e.g. 0:4), got {text!r}") from None
    layers = list(range(num_ws))[start:stop]
    if not layers:
        raise app.UsageError(f"--layers={text} selects no style input (there are {num_ws})")
    return layers


def main(argv):
    del argv
    axes = Axes.load(FLAGS.axes)
    gen_name, _ = models_named_by_axes(axes.metadata, FLAGS.axes, FLAGS.generator, ())
    gen = load_generator(gen_name)
    gen = gen.in_space(axes.latent_space)   # refuses w / w+ axes for a generator with only z
    axes.check_generator(gen)
    layers = None
    if FLAGS.layers is not None:
        if gen.latent_space == "z":
            raise app.UsageError("--layers needs W or W+ axes (discover_axes.py "
                                 "--latent_space=w with a StyleGAN2 generator)")
        layers = parse_layers(FLAGS.layers, gen.w_space.num_ws)
    if FLAGS.latents:
        z = np.load(FLAGS.latents, allow_pickle=False)
    else:
        z = np.asarray(gen.sample_latents(jax.random.key(FLAGS.seed), FLAGS.faces))
    steps = [float(s) for s in FLAGS.steps]
    names = FLAGS.attributes or list(axes.names)
    for name in names:
        lock = [n for n in FLAGS.lock if n != name]
        direction = np.asarray(edit_directions(axes, [name], lock))[:, 0]
        imgs = render_traversal(gen, z, direction, steps, layers=layers)
        title = f"{name}" + (f" (locked: {', '.join(lock)})" if lock else "") + (
            f" (style inputs {layers[0]}..{layers[-1]})" if layers else "")
        grid = image_grid(imgs, [f"face {i}" for i in range(len(z))],
                          [f"{s:+g}" for s in steps], title=title, cell=FLAGS.cell or None)
        path = save_png(grid, Path(FLAGS.out) / f"traversal_{name}.png")
        print(path)


if __name__ == "__main__":
    app.run(main)
