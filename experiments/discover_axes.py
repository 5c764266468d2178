r"""Discover attribute axes (TL-GAN): sample, label, fit, evaluate edits, write traversals.

  python experiments/discover_axes.py --workdir=runs/digiface64
  python experiments/discover_axes.py --generator=pggan:karras2018iclr-celebahq-1024x1024.pkl \
      --extractors=celeba40:runs/celeba40 --num_samples=256000 --fast --workdir=runs/celebahq
  python experiments/discover_axes.py --generator=stylegan2:stylegan2-ffhq-config-f.pkl \
      --latent_space=w --extractors=fa_age_gender --workdir=runs/ffhq_w
  python experiments/discover_axes.py --extractors=gender,age,fa_age_gender \
      --combine=age_mix=age,fa_age --workdir=runs/age_mix

Writes WORKDIR/axes.npz, WORKDIR/traversal_<attribute>.png, WORKDIR/summary.{md,json} and the
resumable (z, y) shards in WORKDIR/samples/ (rerun the same command to resume a killed run).
Defaults: configs/discover_axes.py.
"""
from pathlib import Path

from tlgan_jax import cli
from tlgan_jax.discover import DiscoverConfig, discover_axes


def main(cfg):
    gen, extractors = cli.load_models(cfg.generator, cfg.extractors, fast=cfg.fast)
    judges, descriptor = cli.load_judges(cfg.judges, cfg.extractors, extractors, cfg.identity)
    job = cli.subset(cfg, DiscoverConfig, combine=cfg.combine_specs())
    axes, _ = discover_axes(gen, extractors, cfg.workdir, job,
                            judges=judges, descriptor=descriptor)
    work = Path(cfg.workdir)
    print((work / "summary.md").read_text())
    print(f"wrote {work / 'axes.npz'} (open it in the editor: python -m tlgan_jax.serve "
          f"--axes={work / 'axes.npz'}), {work}/traversal_<attribute>.png for "
          f"{len(axes.names)} attributes, {work / 'summary.md'}, {work / 'summary.json'}, "
          f"samples in {work / 'samples'}/")


if __name__ == "__main__":
    cli.run(main, cli.repo_config(__file__), doc=__doc__)
