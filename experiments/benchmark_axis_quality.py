r"""Benchmark axis quality against sample count and method (tlgan_jax.bench.axis_quality).

  python experiments/benchmark_axis_quality.py --workdir=runs/axis_quality
  python experiments/benchmark_axis_quality.py --workdir=docs/axis_quality \
      --samples_dir=runs/axis_quality_samples          # the committed CPU results
  python experiments/benchmark_axis_quality.py --replot --workdir=docs/axis_quality

For every method (ols, logistic, svm; unsupervised sefa, ganspace), sample count N and repeat:
split-half cosine, cosine to the reference axis, held-out AUC / R², edit success and off-target
leakage before/after locking; edit success also as judged by the nets that did not define the
axis (--judges, default: the other embedded family) and identity kept (--identity). Writes
WORKDIR/axis_quality.csv, entanglement.csv, axis_quality.png, summary.md and meta.json; the
labelled samples go to --samples_dir (default WORKDIR/samples) as resumable shards, so a
killed run resumes its sampling.
Defaults (configs/benchmark_axis_quality.py): N = 1K … 100K on CPU, up to 1M on an
accelerator; gender + age extractors (emotion labels ~4× slower on CPU).
"""
from pathlib import Path

from tlgan_jax import cli
from tlgan_jax.bench import axis_quality as quality


def main(cfg):
    workdir = Path(cfg.workdir)
    if not cfg.replot:
        gen, extractors = cli.load_models(cfg.generator, cfg.extractors, fast=cfg.fast)
        judges, descriptor = cli.load_judges(cfg.judges, cfg.extractors, extractors,
                                             cfg.identity)
        qcfg = cli.subset(cfg, quality.QualityConfig, max_n=cfg.caps(),
                          sample_counts=cfg.sample_counts or quality.default_sample_counts())
        quality.benchmark_axis_quality(gen, extractors, workdir, qcfg,
                                       samples_dir=cfg.samples_dir,
                                       judges=judges, descriptor=descriptor)
    else:
        quality.write_reports(workdir)
    print((workdir / "summary.md").read_text())
    print(f"wrote {workdir}/summary.md, axis_quality.csv, entanglement.csv, axis_quality.png")


if __name__ == "__main__":
    cli.run(main, cli.repo_config(__file__), doc=__doc__)
