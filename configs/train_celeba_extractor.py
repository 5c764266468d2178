"""experiments/train_celeba_extractor.py: TL-GAN's CelebA-40 extractor on tfds celeb_a."""
import dataclasses
import importlib.util
from pathlib import Path

from tlgan_jax import cli
from tlgan_jax.extractors.celeba40 import checkpoint_directory
from tlgan_jax.train import celeba40 as train_extractor

_T = train_extractor.TrainConfig()


@dataclasses.dataclass(frozen=True)
class Config:
    data_dir: str | None = cli.flag(None, "tfds data directory holding celeb_a prepared as "
                                    "array_record (default: $TFDS_DATA_DIR or "
                                    "~/tensorflow_datasets).")
    workdir: str = cli.flag("", "Output directory (required): checkpoints, config.json, "
                            "metrics.csv/.md, eval_history.csv. An existing one is resumed.",
                            nonempty=True)
    epochs: int = cli.flag(_T.epochs, "Training epochs over the num_train images.", min=1)
    batch_size: int = cli.flag(_T.batch_size, "Training batch size.", min=1)
    learning_rate: float = cli.flag(_T.learning_rate, "Adam peak learning rate.", gt=0)
    lr_schedule: str = cli.flag(_T.lr_schedule, "constant (TL-GAN) or cosine decay to 0 over "
                                "the whole run.", choices=("constant", "cosine"))
    warmup_steps: int = cli.flag(_T.warmup_steps, "Linear learning-rate warm-up steps.", min=0)
    weight_decay: float = cli.flag(_T.weight_decay, "Decoupled weight decay (AdamW) if > 0.",
                                   min=0)
    alpha: float = cli.flag(_T.alpha, "MobileNet width multiplier (1.0 as TL-GAN; "
                            "0.25/0.5/0.75 are smaller and faster).", gt=0)
    num_train: int = cli.flag(_T.num_train, "Random training images drawn from the train "
                              "split with --seed (TL-GAN: 65536 = 2^16); 0: the whole split "
                              "(162,770).", min=0)
    num_val: int = cli.flag(_T.num_val, "Random validation images from the validation split; "
                            "0: the whole split (19,867).", min=0)
    seed: int = cli.flag(_T.seed, "Seed of the image choice, initialisation, batch order and "
                         "flips.", min=0)
    init_checkpoint: str | None = cli.flag(None, "Start from this checkpoint (a workdir of this "
                                           "script, or its checkpoints/ folder; same alpha) "
                                           "instead of random weights. Ignored when --workdir "
                                           "already holds checkpoints.")
    flip: bool = cli.flag(_T.flip, "Random horizontal flips of training images.")
    eval_batch_size: int = cli.flag(_T.eval_batch_size, "Validation batch size.", min=1)
    log_every: int = cli.flag(_T.log_every, "Steps between progress lines (loss, samples/s).",
                              min=1)
    checkpoint_every: int = cli.flag(_T.checkpoint_every, "Steps between checkpoints; 0: at "
                                     "the end of each epoch (always also at the stop).", min=0)
    keep_checkpoints: int = cli.flag(_T.keep_checkpoints, "Checkpoints kept.", min=1)
    num_threads: int = cli.flag(_T.num_threads, "Threads decoding CelebA JPEGs.", min=1)
    max_steps: int | None = cli.flag(None, "Stop (with a checkpoint) once the step count "
                                     "reaches this; rerun to continue.", min=0)
    synthetic: int = cli.flag(0, "If > 0, train on this many generated images "
                              "(celeba.SyntheticCelebA, 80/20 split) instead of CelebA: a setup "
                              "check.", min=0)
    verbose: bool = cli.flag(False, "Show library (orbax, tfds) INFO logs too.")

    def train_config(self) -> train_extractor.TrainConfig:
        return cli.subset(self, train_extractor.TrainConfig, num_train=self.num_train or None,
                          num_val=self.num_val or None)

    def validate(self):
        if self.synthetic and self.synthetic < 2:
            raise cli.ConfigError("synthetic", "needs at least 2 images (80/20 split)",
                                  self.synthetic)
        if not self.synthetic:
            if importlib.util.find_spec("tensorflow_datasets") is None:
                raise cli.ConfigError("data_dir", "reading CelebA needs tensorflow-datasets: "
                                      "pip install -e '.[celeba]' (or --synthetic=N for a "
                                      "setup check)", self.data_dir)
            if self.data_dir and not Path(self.data_dir).expanduser().is_dir():
                raise cli.ConfigError("data_dir", "no such directory", self.data_dir)
        if self.init_checkpoint:
            try:
                checkpoint_directory(self.init_checkpoint)
            except FileNotFoundError as e:
                raise cli.ConfigError("init_checkpoint", str(e), self.init_checkpoint) from None
        cli.check_output_dir(self.workdir, "workdir")


def get_config() -> Config:
    return Config()
