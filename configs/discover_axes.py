"""experiments/discover_axes.py: sample, label, fit, evaluate edits, write traversals."""
import dataclasses

from tlgan_jax import cli
from tlgan_jax.combine import parse_combine
from tlgan_jax.discover import DiscoverConfig

_D = DiscoverConfig()


@dataclasses.dataclass(frozen=True)
class Config:
    generator: str = cli.generator_flag()
    latent_space: str = cli.flag(_D.latent_space, "Where the axes live: z (every generator), "
                                 "or W / W+ (StyleGAN2: w = the mapping's output; w+ = one w "
                                 "per style input). Stored in axes.npz.",
                                 choices=("z", "w", "w+"))
    extractors: tuple[str, ...] = cli.extractors_flag()
    judges: tuple[str, ...] = cli.judges_flag()
    combine: str = cli.flag("", "Ensemble targets: NAME=SRC1,SRC2[;NAME2=...]: a new attribute "
                            "NAME, the mean of the standardised scores SRC1, SRC2 (e.g. "
                            "age_mix=age,fa_age); fitted, edited and judged like the others, "
                            "each source net judging it independently.")
    identity: str = cli.identity_flag()
    workdir: str = cli.flag("runs/discover", "Output directory (created; rerun the same command "
                            "to resume a killed run).", nonempty=True)
    num_samples: int = cli.flag(_D.num_samples, "Number of labelled samples (z, y) to draw.",
                                min=4)
    seed: int = cli.flag(_D.seed, "Random seed: same seed, same samples and axes.", min=0)
    method: str = cli.flag(_D.method, "Axis fit: ols (TL-GAN), logistic (L2) or svm "
                           "(InterFaceGAN, 2% extremes).", choices=("ols", "logistic", "svm"))
    batch_size: int = cli.flag(_D.batch_size, "Latents per device batch when labelling.", min=1)
    shard_size: int = cli.flag(_D.shard_size, "Samples per on-disk shard (the resume unit).",
                               min=1)
    logit_clip: float = cli.flag(_D.logit_clip, "Targets of ols: binary logits clipped to "
                                 "[-c, c] (TL-GAN: 3).", gt=0)
    eval_faces: int = cli.flag(_D.eval_faces, "Fresh faces re-scored after edits.", min=1)
    eval_step: float = cli.flag(_D.eval_step, "Edit step (latent units) for the edit figures.",
                                gt=0)
    traversal_faces: int = cli.flag(_D.traversal_faces, "Rows (faces) per traversal PNG.",
                                    min=1)
    traversal_steps: tuple[float, ...] = cli.flag(_D.traversal_steps, "Columns (steps along "
                                                  "the axis) of each traversal PNG.",
                                                  nonempty=True)
    fast: bool = cli.flag(False, "Use the generator's bf16 fast path where it has one.")
    progress: bool = cli.flag(_D.progress, "Show progress lines with rates.")

    def combine_specs(self) -> tuple[str, ...]:
        """--combine split into "NAME=SRC1,SRC2" entries (DiscoverConfig.combine)."""
        return tuple(s.strip() for s in self.combine.split(";") if s.strip())

    def validate(self):
        cli.check_generator(self.generator, latent_space=self.latent_space)
        try:
            parse_combine(self.combine_specs())
        except ValueError as e:
            raise cli.ConfigError("combine", str(e).removeprefix("--combine: "),
                                  self.combine) from None
        cli.check_extractors(self.extractors)
        cli.check_judges(self.judges)
        cli.check_output_dir(self.workdir, "workdir")
        if self.eval_faces < self.traversal_faces:
            raise cli.ConfigError("traversal_faces", f"at most --eval_faces={self.eval_faces} "
                                  f"(the traversals show the first evaluation faces)",
                                  self.traversal_faces)


def get_config() -> Config:
    return Config()
