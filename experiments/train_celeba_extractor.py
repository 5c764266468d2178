r"""Train the CelebA-40 attribute extractor (TL-GAN's MobileNet v1 design) on tfds celeb_a.

    python experiments/train_celeba_extractor.py --data_dir ~/tensorflow_datasets \
        --workdir runs/celeba40

TL-GAN trained on 2^16 random CelebA images, batch 128, 50 epochs, Adam, MSE on labels in
{-1, +1}, with a frozen ImageNet MobileNet. ImageNet weights are not available offline, so the
whole network is trained from scratch here (pass --init_checkpoint to start from a checkpoint
of your own instead). Validation uses CelebA's own validation split (other identities).
Rerunning with the same --workdir resumes from its latest checkpoint. The result loads with
`tlgan_jax.load_extractor("celeba40:WORKDIR")`; per-attribute accuracy/AUC are in
workdir/metrics.md and metrics.csv. CelebA must be prepared once for tfds as array_record
(the error message when it is missing says how; reading it needs the `celeba` extra,
pip install -e '.[celeba]'). --synthetic N runs the same loop on N generated images instead,
to check a setup without CelebA. Defaults: configs/train_celeba_extractor.py.
"""
import time

from absl import logging

from tlgan_jax import cli
from tlgan_jax.train import celeba
from tlgan_jax.train import celeba40 as train_extractor


def _log(message: str):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def main(cfg):
    if not cfg.verbose:
        logging.set_verbosity(logging.WARNING)
    kw = dict(init_checkpoint=cfg.init_checkpoint, max_steps=cfg.max_steps, log=_log)
    if cfg.synthetic:
        n_val = max(cfg.synthetic // 5, 1)
        source = celeba.SyntheticCelebA(cfg.synthetic, seed=cfg.seed)
        train_data, val_data = (celeba.load_arrays(source, rows, num_threads=cfg.num_threads)
                                for rows in (range(cfg.synthetic - n_val),
                                             range(cfg.synthetic - n_val, cfg.synthetic)))
        result = train_extractor.train_on_arrays(cfg.train_config(), train_data, val_data,
                                                 cfg.workdir, **kw)
    else:
        result = train_extractor.train(cfg.train_config(), cfg.data_dir, cfg.workdir, **kw)
    _log(f"done at step {result.step}; tables in {result.workdir}/metrics.md")


if __name__ == "__main__":
    cli.run(main, cli.repo_config(__file__), doc=__doc__)
