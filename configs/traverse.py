"""experiments/traverse.py: traversal grids from an axes file."""
import dataclasses

from tlgan_jax import cli
from tlgan_jax.editing import parse_layers
from tlgan_jax.generators import is_stylegan2


@dataclasses.dataclass(frozen=True)
class Config:
    axes: str = cli.flag("", "Path of an axes.npz written by discover_axes.py (required).",
                         nonempty=True)
    generator: str = cli.flag("", "Generator to render with (default: the built-in one named "
                              "in the axes file; a generator that reads a file, such as "
                              "pggan:PATH, must be named here).")
    out: str = cli.flag("runs/traverse", "Output directory for the PNG grids.", nonempty=True)
    attributes: tuple[str, ...] = cli.flag((), "Attributes to traverse (default: all in the "
                                           "axes file).")
    lock: tuple[str, ...] = cli.flag((), "Attributes to keep fixed (TL-GAN lock: the moved "
                                     "axis made orthogonal to them).")
    latents: str | None = cli.flag(None, "A .npy file of latents [N, d] in the axes' latent "
                                   "space (default: draw --faces with --seed).")
    faces: int = cli.flag(6, "Faces drawn with --seed when --latents is not given.", min=1)
    seed: int = cli.flag(0, "Seed for drawing faces.", min=0)
    steps: tuple[float, ...] = cli.flag((-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0),
                                        "Steps along each axis (latent units).", nonempty=True)
    cell: int = cli.flag(0, "Pixel size of each cell (0: the image size, at least 96).", min=0)
    layers: str | None = cli.flag(None, "Style inputs to edit, START:STOP or coarse (0:4), "
                                  "middle (4:8), fine (8:) (W / W+ axes only); default: all.")

    def generator_name(self, axes) -> str:
        """--generator, else the built-in generator the axes name (an axes file never chooses
        a file to open), else the embedded default."""
        return cli.models_for_axes(axes.metadata, self.axes, self.generator or None, ())[0]

    def validate(self):
        axes = cli.check_axes(self.axes, attributes=self.attributes, lock=self.lock)
        name = self.generator_name(axes)
        field = "generator" if self.generator else "axes"
        cli.check_generator(name, field)
        if axes.latent_space != "z" and not is_stylegan2(name):
            raise cli.ConfigError(field, f"the axes are in {axes.latent_space} space, which "
                                  f"generator {name} has not (W and W+ belong to StyleGAN2); "
                                  f"name the StyleGAN2 generator they were fitted for with "
                                  f"--generator", self.generator or self.axes)
        if self.layers is not None:
            try:
                parse_layers(self.layers)
            except ValueError as e:
                raise cli.ConfigError("layers", str(e), self.layers) from None
            if axes.latent_space == "z":
                raise cli.ConfigError("layers", "needs W or W+ axes (discover_axes.py "
                                      "--latent_space=w with a StyleGAN2 generator); "
                                      f"{self.axes} holds z axes", self.layers)
        cli.check_file(self.latents, "latents", ".npy file")
        cli.check_output_dir(self.out, "out")


def get_config() -> Config:
    return Config()
