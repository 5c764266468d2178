"""experiments/benchmark_axis_quality.py: axis quality against sample count and method."""
import dataclasses
from pathlib import Path

from tlgan_jax import cli
from tlgan_jax.bench.axis_quality import QualityConfig
from tlgan_jax.fit import METHODS

_C = QualityConfig()


@dataclasses.dataclass(frozen=True)
class Config:
    generator: str = cli.generator_flag()
    extractors: tuple[str, ...] = cli.extractors_flag(("gender", "age"))
    judges: tuple[str, ...] = cli.judges_flag()
    identity: str = cli.identity_flag()
    sample_counts: tuple[int, ...] = cli.flag((), "Sample counts N (default: 1000,...,100000 on "
                                              "CPU; up to 1000000 on an accelerator).", min=4)
    methods: tuple[str, ...] = cli.flag(_C.methods, "Fit methods.", choices=tuple(METHODS),
                                        nonempty=True)
    repeats: int = cli.flag(_C.repeats, "Independent repeats per (method, N).", min=1)
    workdir: str = cli.flag("runs/axis_quality", "Output directory for CSV, PNG, summary.",
                            nonempty=True)
    samples_dir: str | None = cli.flag(None, "Where the labelled shards go (default "
                                       "WORKDIR/samples).")
    seed: int = cli.flag(_C.seed, "Pool seed; the fresh held-out/edit samples use seed + 1.",
                         min=0)
    heldout_samples: int = cli.flag(_C.heldout_samples, "Fresh samples for AUC / R^2.", min=2)
    edit_faces: int = cli.flag(_C.edit_faces, "Fresh faces re-scored after each edit.", min=1)
    step: float = cli.flag(_C.step, "Edit step in latent units (z +- step * axis).", gt=0)
    logit_clip: float = cli.flag(_C.logit_clip, "Targets of ols: binary logits clipped to "
                                 "+-c.", gt=0)
    max_n: tuple[str, ...] = cli.flag((), "Per-method caps on N, METHOD=N, e.g. svm=50000.")
    num_directions: int = cli.flag(_C.num_directions, "SeFa / GANSpace candidates.", min=1)
    ganspace_samples: int = cli.flag(_C.ganspace_samples, "Latents for GANSpace's PCA.", min=1)
    batch_size: int = cli.flag(_C.batch_size, "Latents per labelling batch.", min=1)
    fast: bool = cli.flag(False, "Use the generator's bf16 fast path where it has one.")
    progress: bool = cli.flag(_C.progress, "Show progress lines while sampling.")
    replot: bool = cli.flag(False, "Only rewrite axis_quality.png and summary.md from "
                            "WORKDIR/axis_quality.csv and meta.json.")

    def caps(self) -> dict[str, int]:
        """--max_n as {method: N}."""
        caps = {}
        for item in self.max_n:
            method, _, value = item.partition("=")
            if method not in self.methods or not value.isdigit() or int(value) < 1:
                raise cli.ConfigError("max_n", f"entries look like METHOD=N with METHOD one of "
                                      f"--methods and N >= 1, got {item!r}", self.max_n)
            caps[method] = int(value)
        return caps

    def validate(self):
        self.caps()
        if self.replot:
            for name in ("axis_quality.csv", "meta.json"):
                cli.check_file(str(Path(self.workdir) / name), "workdir",
                               f"{name} of an earlier run (--replot)")
            return
        cli.check_generator(self.generator)
        cli.check_extractors(self.extractors)
        cli.check_judges(self.judges)
        cli.check_output_dir(self.workdir, "workdir")
        cli.check_output_dir(self.samples_dir, "samples_dir")


def get_config() -> Config:
    return Config()
