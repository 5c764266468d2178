r"""Invert photos into the generator's latent space (real-photo editing), with quality figures.

  python experiments/invert.py --photos=me.jpg --out=runs/invert
  python experiments/invert.py --astronaut --axes=runs/discover/axes.npz \
      --edits=male:-3,male:3,age:3,happy:3 --out=runs/invert
  python experiments/invert.py --generated=8 --out=runs/invert_known   # faces with known z

Photos are framed like the generator's faces (`tlgan_jax.invert.frame_face`: face detection with
scikit-image when installed, else the centre square; or --box / --framing), inverted, and the
generator tuned to each photo (--refine_steps, 0: off). Writes OUT/<name>_z.npy, OUT/<name>.png
(crop | reconstruction | edits) and OUT/summary.{json,md}; --generated=N inverts N of the
generator's own faces and compares with the mean-face baseline (tlgan_jax.invert.report).
Defaults: configs/invert.py.
"""
from pathlib import Path

from tlgan_jax import cli
from tlgan_jax.axes import Axes
from tlgan_jax.invert import InversionConfig, Inverter
from tlgan_jax.invert.report import invert_generated, invert_photos


def main(cfg):
    gen, extractors = cli.load_models(cfg.generator, cfg.extractors if cfg.feature_weight else ())
    inverter = Inverter(gen, extractors, cli.subset(cfg, InversionConfig))
    if cfg.generated:
        invert_generated(gen, inverter, cfg.generated, cfg.out, seed=cfg.seed)
    else:
        axes = Axes.load(cfg.axes) if cfg.axes else None
        if axes is not None:
            cli.check_latents(axes, gen, "axes", cfg.axes)
        photos = [(Path(p).stem, p) for p in cfg.photos]
        if cfg.astronaut:
            from skimage import data  # scikit-image: only for this offline sample photo
            photos.append(("astronaut", data.astronaut()))
        invert_photos(gen, inverter, photos, cfg.out, axes=axes, edits=cfg.edit_amounts(),
                      lock=cfg.lock, box=cfg.box or None, framing=cfg.framing, seed=cfg.seed)
    print((Path(cfg.out) / "summary.md").read_text())
    print(f"wrote {cfg.out}/summary.md, summary.json and the PNGs / latents (.npy) per photo")


if __name__ == "__main__":
    cli.run(main, cli.repo_config(__file__), doc=__doc__)
