r"""Train the CelebA-40 attribute extractor (TL-GAN's MobileNet v1 design) on tfds celeb_a.

    python experiments/train_celeba_extractor.py --data_dir ~/tensorflow_datasets \
        --workdir runs/celeba40

TL-GAN trained on 2^16 random CelebA images, batch 128, 50 epochs, Adam, MSE on labels in
{-1, +1}, with a frozen ImageNet MobileNet. ImageNet weights are not available offline, so the
whole network is trained from scratch here (pass --init_checkpoint to start from a checkpoint
of your own instead). Validation uses CelebA's own validation split (other identities).
Rerunning with the same --workdir resumes from its latest checkpoint. The result loads with
`tlgan_jax.extractors.celeba40.load_celeba40(workdir)`; per-attribute accuracy/AUC are in
workdir/metrics.md and metrics.csv. CelebA must be prepared once for tfds as array_record
(the error message when it is missing says how). --synthetic N runs the same loop on N
generated images instead, to check a setup without CelebA.
"""
from __future__ import annotations

import sys
import time

from absl import app, flags, logging

from tlgan_jax.train import celeba
from tlgan_jax.train import celeba40 as train_extractor

_DEFAULTS = train_extractor.TrainConfig()

flags.DEFINE_string("data_dir", None, "tfds data directory holding celeb_a prepared as "
                    "array_record (default: $TFDS_DATA_DIR or ~/tensorflow_datasets).")
flags.DEFINE_string("workdir", None, "Output directory: checkpoints, config.json, metrics.csv/.md, "
                    "eval_history.csv. An existing one is resumed.", required=True)
flags.DEFINE_integer("epochs", _DEFAULTS.epochs, "Training epochs over the num_train images.")
flags.DEFINE_integer("batch_size", _DEFAULTS.batch_size, "Training batch size.")
flags.DEFINE_float("learning_rate", _DEFAULTS.learning_rate, "Adam peak learning rate.")
flags.DEFINE_enum("lr_schedule", _DEFAULTS.lr_schedule, ["constant", "cosine"],
                  "constant (TL-GAN) or cosine decay to 0 over the whole run.")
flags.DEFINE_integer("warmup_steps", _DEFAULTS.warmup_steps, "Linear learning-rate warm-up steps.")
flags.DEFINE_float("weight_decay", _DEFAULTS.weight_decay, "Decoupled weight decay (AdamW) if > 0.")
flags.DEFINE_float("alpha", _DEFAULTS.alpha, "MobileNet width multiplier (1.0 as TL-GAN; "
                   "0.25/0.5/0.75 are smaller and faster).")
flags.DEFINE_integer("num_train", _DEFAULTS.num_train, "Random training images drawn from the "
                     "train split with --seed (TL-GAN: 65536 = 2^16); 0: the whole split (162,770).")
flags.DEFINE_integer("num_val", _DEFAULTS.num_val, "Random validation images from the validation "
                     "split; 0: the whole split (19,867).")
flags.DEFINE_integer("seed", _DEFAULTS.seed, "Seed of the image choice, initialisation, batch "
                     "order and flips.")
flags.DEFINE_string("init_checkpoint", None, "Start from this checkpoint (a workdir of this script, "
                    "or its checkpoints/ folder; same alpha) instead of random weights. Ignored "
                    "when --workdir already holds checkpoints.")
flags.DEFINE_boolean("flip", _DEFAULTS.flip, "Random horizontal flips of training images.")
flags.DEFINE_integer("eval_batch_size", _DEFAULTS.eval_batch_size, "Validation batch size.")
flags.DEFINE_integer("log_every", _DEFAULTS.log_every, "Steps between progress lines "
                     "(loss, samples/s).")
flags.DEFINE_integer("checkpoint_every", _DEFAULTS.checkpoint_every, "Steps between checkpoints; "
                     "0: at the end of each epoch (always also at the stop).")
flags.DEFINE_integer("keep_checkpoints", _DEFAULTS.keep_checkpoints, "Checkpoints kept.")
flags.DEFINE_integer("num_threads", _DEFAULTS.num_threads, "Threads decoding CelebA JPEGs.")
flags.DEFINE_integer("max_steps", None, "Stop (with a checkpoint) once the step count reaches "
                     "this; rerun to continue.")
flags.DEFINE_integer("synthetic", 0, "If > 0, train on this many generated images "
                     "(celeba.SyntheticCelebA, 80/20 split) instead of CelebA: a setup check.")
flags.DEFINE_boolean("verbose", False, "Show library (orbax, tfds) INFO logs too.")

FLAGS = flags.FLAGS


def _config() -> train_extractor.TrainConfig:
    return train_extractor.TrainConfig(
        alpha=FLAGS.alpha, batch_size=FLAGS.batch_size, epochs=FLAGS.epochs,
        learning_rate=FLAGS.learning_rate, lr_schedule=FLAGS.lr_schedule,
        warmup_steps=FLAGS.warmup_steps, weight_decay=FLAGS.weight_decay, flip=FLAGS.flip,
        num_train=FLAGS.num_train or None, num_val=FLAGS.num_val or None, seed=FLAGS.seed,
        eval_batch_size=FLAGS.eval_batch_size, log_every=FLAGS.log_every,
        checkpoint_every=FLAGS.checkpoint_every, keep_checkpoints=FLAGS.keep_checkpoints,
        num_threads=FLAGS.num_threads)


def _log(message: str):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not FLAGS.verbose:
        logging.set_verbosity(logging.WARNING)
    config = _config()
    try:
        if FLAGS.synthetic > 0:
            n_val = max(FLAGS.synthetic // 5, 1)
            n_train = FLAGS.synthetic - n_val
            source = celeba.SyntheticCelebA(FLAGS.synthetic, seed=FLAGS.seed)
            train_data = celeba.load_arrays(source, range(n_train), num_threads=FLAGS.num_threads)
            val_data = celeba.load_arrays(source, range(n_train, FLAGS.synthetic),
                                          num_threads=FLAGS.num_threads)
            result = train_extractor.train_on_arrays(
                config, train_data, val_data, FLAGS.workdir,
                init_checkpoint=FLAGS.init_checkpoint, max_steps=FLAGS.max_steps, log=_log)
        else:
            result = train_extractor.train(
                config, FLAGS.data_dir, FLAGS.workdir, init_checkpoint=FLAGS.init_checkpoint,
                max_steps=FLAGS.max_steps, log=_log)
    except celeba.CelebANotFoundError as e:
        print(e, file=sys.stderr)
        return 2
    _log(f"done at step {result.step}; tables in {result.workdir}/metrics.md")
    return 0


if __name__ == "__main__":
    app.run(main)
