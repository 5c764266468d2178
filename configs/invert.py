"""experiments/invert.py: photos (or generated faces) -> z, with quality figures and edits.

refine_steps defaults to 100 (per-photo generator tuning, as the editor): the README's
reconstruction figure needs it; --refine_steps=0 inverts z only."""
import dataclasses
import importlib.util
import math

from tlgan_jax import cli
from tlgan_jax.invert import InversionConfig

_C = InversionConfig()


@dataclasses.dataclass(frozen=True)
class Config:
    photos: tuple[str, ...] = cli.flag((), "Photo files to invert (PNG, JPEG, ...).")
    astronaut: bool = cli.flag(False, "Also invert scikit-image's astronaut photo (offline).")
    generated: int = cli.flag(0, "Invert this many generated faces with known z instead of "
                              "photos (quality figures; no edits).", min=0)
    out: str = cli.flag("runs/invert", "Output directory.", nonempty=True)
    generator: str = cli.generator_flag()
    extractors: tuple[str, ...] = cli.extractors_flag(nonempty=False)
    framing: str = cli.flag("auto", "auto: detect the face and frame it like the generator's "
                            "faces; center: the centre square; full: the whole photo.",
                            choices=("auto", "center", "full"))
    box: tuple[float, ...] = cli.flag((), "Crop box left,top,right,bottom in pixels (overrides "
                                      "--framing).", min=0)
    steps: int = cli.flag(_C.steps, "Adam steps on z.", min=1)
    restarts: int = cli.flag(_C.restarts, "Starts optimised at once (the best is kept).", min=1)
    init_pool: int = cli.flag(_C.init_pool, "Random z scored to choose the starts (at least "
                              "--restarts).", min=1)
    learning_rate: float = cli.flag(_C.learning_rate, "Adam step on z (cosine-decayed).", gt=0)
    lowres_weight: float = cli.flag(_C.lowres_weight, "Weight of the 16x16 pixel loss.", min=0)
    feature_weight: float = cli.flag(_C.feature_weight, "Weight of the extractor-score loss (0: "
                                     "pixel loss only, the extractors are not loaded).", min=0)
    prior_weight: float = cli.flag(_C.prior_weight, "Weight of |z|^2/d.", min=0)
    refine_steps: int = cli.flag(100, "Per-photo generator tuning steps after z (0: z only).",
                                 min=0)
    refine_learning_rate: float = cli.flag(_C.refine_learning_rate, "Adam step of the tuning.",
                                           gt=0)
    anchor_weight: float = cli.flag(_C.anchor_weight, "Pull of the tuned weights to the "
                                    "original.", min=0)
    axes: str | None = cli.flag(None, "axes.npz for edits after the reconstruction (photos).")
    edits: tuple[str, ...] = cli.flag(("male:-3", "male:3", "age:3", "happy:3"),
                                      "Edits shown after the reconstruction, ATTRIBUTE:AMOUNT "
                                      "(with --axes).", needs=("axes",))
    lock: tuple[str, ...] = cli.flag((), "Attributes locked while editing (TL-GAN lock).",
                                     needs=("axes",))
    seed: int = cli.flag(0, "Random seed (starts; generated faces use seed + 1).", min=0)

    def edit_amounts(self) -> list[tuple[str, float]]:
        """--edits as (attribute, amount) pairs."""
        out = []
        for entry in self.edits:
            name, sep, amount = entry.partition(":")
            try:
                value = float(amount)
            except ValueError:
                value = math.nan
            if not sep or not name or not math.isfinite(value):
                raise cli.ConfigError("edits", f"{entry!r} is not ATTRIBUTE:AMOUNT with a finite "
                                      f"amount, e.g. male:3", self.edits)
            out.append((name, value))
        return out

    def validate(self):
        if self.generated and (self.photos or self.astronaut):
            raise cli.ConfigError("generated", "inverts generated faces instead of photos: give "
                                  "either --generated=N or --photos/--astronaut", self.generated)
        if self.generated and self.axes:
            raise cli.ConfigError("axes", "edits are shown for photos; --generated measures the "
                                  "inversion on generated faces: drop --axes or --generated",
                                  self.axes)
        if not (self.generated or self.photos or self.astronaut):
            raise cli.ConfigError("photos", "nothing to invert: give --photos=FILE[,FILE...], "
                                  "--astronaut or --generated=N", self.photos)
        for photo in self.photos:
            cli.check_file(photo, "photos", "photo")
        if self.astronaut and importlib.util.find_spec("skimage") is None:
            raise cli.ConfigError("astronaut", "needs scikit-image: pip install scikit-image "
                                  "(it comes with the ui extra)", self.astronaut)
        if self.box and (len(self.box) != 4 or self.box[2] <= self.box[0]
                         or self.box[3] <= self.box[1]):
            raise cli.ConfigError("box", "give left,top,right,bottom with right > left and "
                                  "bottom > top", self.box)
        if self.init_pool < self.restarts:
            raise cli.ConfigError("init_pool", f"must be at least --restarts={self.restarts}",
                                  self.init_pool)
        edits = self.edit_amounts()
        if self.axes:
            cli.check_axes(self.axes, edits=[n for n, _ in edits], lock=self.lock)
        cli.check_generator(self.generator)
        if self.feature_weight:
            cli.check_extractors(self.extractors)
        cli.check_output_dir(self.out, "out")


def get_config() -> Config:
    return Config()
