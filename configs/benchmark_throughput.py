"""experiments/benchmark_throughput.py: labelled samples/s of z -> G(z) -> extractors -> y."""
import dataclasses
import shutil

from tlgan_jax import cli
from tlgan_jax.bench.throughput import DTYPES, default_peer_script
from tlgan_jax.generators import is_stylegan2


@dataclasses.dataclass(frozen=True)
class Config:
    generator: str = cli.generator_flag()
    extractors: tuple[str, ...] = cli.extractors_flag(("gender", "age"))
    batch: tuple[int, ...] = cli.flag((256,), "Batch sizes to sweep.", min=1, nonempty=True)
    dtype: tuple[str, ...] = cli.flag(("float32",), "Generator compute dtypes to sweep: float32 "
                                      "(faithful) and/or bfloat16 (the fast path; pg-GAN "
                                      "and StyleGAN2 generators).", choices=DTYPES, nonempty=True)
    num: int = cli.flag(8192, "Samples timed per configuration (after a warm-up).", min=1)
    repeats: int = cli.flag(1, "Timed repeats per configuration; the best is reported.", min=1)
    agreement_samples: int = cli.flag(64, "Latents on which the bf16 path's outputs are "
                                      "compared with float32's when both dtypes are swept (0: "
                                      "skip).", min=0)
    json: str | None = cli.flag(None, "Write the results as JSON to this path.")
    csv: str | None = cli.flag(None, "Also write one CSV row per configuration to this path.")
    peer_python: str | None = cli.flag(None, "A Python with torch and onnxruntime: runs the "
                                       "packages' own runtimes (cpu_peer_embedded.py) in the "
                                       "same run for the ratio.")
    peer_rounds: int = cli.flag(3, "Rounds of (ours, peer) timed alternately; the median ratio "
                                "is reported.", min=1)
    peer_script: str | None = cli.flag(None, "Path of cpu_peer_embedded.py (default: "
                                       "../shared/bench/ next to the repository).")
    profile_json: str | None = cli.flag(None, "Also profile the labeller on this machine "
                                        "(per-network time and FLOPs, attainable GFLOP/s, "
                                        "floor) into this JSON.")

    def peer_script_path(self) -> str:
        return self.peer_script or str(default_peer_script())

    def validate(self):
        cli.check_generator(self.generator)
        cli.check_extractors(self.extractors)
        if "bfloat16" in self.dtype and not (self.generator.startswith("pggan")
                                             or is_stylegan2(self.generator)):
            raise cli.ConfigError("dtype", f"bfloat16 is the pg-GAN and StyleGAN2 generators' "
                                  f"fast path; {self.generator} has none", self.dtype)
        if len(set(self.dtype)) != len(self.dtype) or len(set(self.batch)) != len(self.batch):
            raise cli.ConfigError("batch" if len(set(self.batch)) != len(self.batch) else
                                  "dtype", "lists a value twice", self.batch)
        cli.check_output_file(self.json, "json")
        cli.check_output_file(self.csv, "csv")
        cli.check_output_file(self.profile_json, "profile_json")
        if self.peer_python:
            if shutil.which(self.peer_python) is None:
                raise cli.ConfigError("peer_python", "not an executable file (nor a command on "
                                      "PATH); give a Python with torch and onnxruntime",
                                      self.peer_python)
            cli.check_file(self.peer_script_path(), "peer_script", "peer script")


def get_config() -> Config:
    return Config()
