"""experiments/traverse.py: traversal grids from an axes file."""
import dataclasses

from tlgan_jax import cli


@dataclasses.dataclass(frozen=True)
class Config:
    axes: str = cli.flag("", "Path of an axes.npz written by discover_axes.py (required).",
                         nonempty=True)
    generator: str = cli.flag("", "Generator to render with (default: the one named in the "
                              "axes file).")
    out: str = cli.flag("runs/traverse", "Output directory for the PNG grids.", nonempty=True)
    attributes: tuple[str, ...] = cli.flag((), "Attributes to traverse (default: all in the "
                                           "axes file).")
    lock: tuple[str, ...] = cli.flag((), "Attributes to keep fixed (TL-GAN lock: the moved "
                                     "axis made orthogonal to them).")
    latents: str | None = cli.flag(None, "A .npy file of latents [N, d] (default: draw --faces "
                                   "with --seed).")
    faces: int = cli.flag(6, "Faces drawn with --seed when --latents is not given.", min=1)
    seed: int = cli.flag(0, "Seed for drawing faces.", min=0)
    steps: tuple[float, ...] = cli.flag((-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0),
                                        "Steps along each axis (latent units).", nonempty=True)
    cell: int = cli.flag(0, "Pixel size of each cell (0: the image size, at least 96).", min=0)

    def validate(self):
        axes = cli.check_axes(self.axes, attributes=self.attributes, lock=self.lock)
        if not (self.generator or axes.metadata.get("generator")):
            raise cli.ConfigError("generator", f"{self.axes} names no generator; give one",
                                  self.generator)
        cli.check_generator(self.generator or axes.metadata["generator"])
        cli.check_file(self.latents, "latents", ".npy file")
        cli.check_output_dir(self.out, "out")


def get_config() -> Config:
    return Config()
