r"""Benchmark axis quality against sample count and method (tlgan_jax.bench.axis_quality).

  python experiments/benchmark_axis_quality.py --workdir=runs/axis_quality
  python experiments/benchmark_axis_quality.py --workdir=docs/axis_quality \
      --samples_dir=runs/axis_quality_samples          # the committed CPU results
  python experiments/benchmark_axis_quality.py --replot --workdir=docs/axis_quality

For every method (ols, logistic, svm; unsupervised sefa, ganspace), sample count N and repeat:
split-half cosine, cosine to the reference axis, held-out AUC / R², edit success and off-target
leakage before/after locking. Writes WORKDIR/axis_quality.csv, entanglement.csv,
axis_quality.png, summary.md and meta.json; the labelled samples go to --samples_dir (default
WORKDIR/samples) as resumable shards, so a killed run resumes its sampling.
Defaults: N = 1K … 100K on CPU, up to 1M on an accelerator; gender + age extractors (emotion
labels ~4× slower on CPU).
"""
from pathlib import Path

from absl import app, flags

from tlgan_jax.bench import axis_quality as quality
from tlgan_jax.extractors import load_extractor
from tlgan_jax.generators import EMBEDDED_GENERATOR, load_generator

_C = quality.QualityConfig()
FLAGS = flags.FLAGS
flags.DEFINE_string("generator", EMBEDDED_GENERATOR,
                    "Generator: 'digiface64' (embedded), 'pggan:PATH.pkl' or 'pggan1024'.")
flags.DEFINE_list("extractors", ["gender", "age"],
                  "Extractors: any of gender, age, emotion, celeba40:CHECKPOINT_DIR.")
flags.DEFINE_list("sample_counts", None,
                  "Sample counts N (default: 1000,…,100000 on CPU; up to 1000000 on GPU).")
flags.DEFINE_list("methods", list(_C.methods), "Fit methods (keys of tlgan_jax.fit.METHODS).")
flags.DEFINE_integer("repeats", _C.repeats, "Independent repeats per (method, N).")
flags.DEFINE_string("workdir", "runs/axis_quality", "Output directory for CSV, PNG, summary.")
flags.DEFINE_string("samples_dir", None, "Where the labelled shards go (default WORKDIR/samples).")
flags.DEFINE_integer("seed", _C.seed, "Pool seed; the fresh held-out/edit samples use seed + 1.")
flags.DEFINE_integer("heldout_samples", _C.heldout_samples, "Fresh samples for AUC / R².")
flags.DEFINE_integer("edit_faces", _C.edit_faces, "Fresh faces re-scored after each edit.")
flags.DEFINE_float("step", _C.step, "Edit step λ in latent units (z ± λ·axis).")
flags.DEFINE_float("logit_clip", _C.logit_clip, "OLS targets: binary logits clipped to ±c.")
flags.DEFINE_list("max_n", [], "Per-method caps on N, e.g. svm=50000.")
flags.DEFINE_integer("num_directions", _C.num_directions, "SeFa / GANSpace candidates.")
flags.DEFINE_integer("ganspace_samples", _C.ganspace_samples, "Latents for GANSpace's PCA.")
flags.DEFINE_integer("batch_size", _C.batch_size, "Latents per labelling batch.")
flags.DEFINE_bool("fast", False, "Use the generator's bf16 fast path where it has one.")
flags.DEFINE_bool("progress", True, "Show progress lines while sampling.")
flags.DEFINE_bool("replot", False, "Only rewrite axis_quality.png and summary.md from "
                  "WORKDIR/axis_quality.csv and meta.json.")


def _caps(items):
    caps = {}
    for item in items:
        method, _, value = item.partition("=")
        if not value:
            raise app.UsageError(f"--max_n entries look like method=N, got {item!r}")
        caps[method] = int(value)
    return caps


def main(argv):
    del argv
    workdir = Path(FLAGS.workdir)
    if FLAGS.replot:
        quality.write_reports(workdir)
        print((workdir / "summary.md").read_text())
        return
    counts = (tuple(int(n) for n in FLAGS.sample_counts) if FLAGS.sample_counts
              else quality.default_sample_counts())
    cfg = quality.QualityConfig(
        sample_counts=counts, methods=tuple(FLAGS.methods), repeats=FLAGS.repeats,
        seed=FLAGS.seed, heldout_samples=FLAGS.heldout_samples, edit_faces=FLAGS.edit_faces,
        step=FLAGS.step, logit_clip=FLAGS.logit_clip, max_n=_caps(FLAGS.max_n),
        num_directions=FLAGS.num_directions, ganspace_samples=FLAGS.ganspace_samples,
        batch_size=FLAGS.batch_size, progress=FLAGS.progress)
    gen = load_generator(FLAGS.generator, fast=FLAGS.fast)
    extractors = [load_extractor(e) for e in FLAGS.extractors]
    quality.benchmark_axis_quality(gen, extractors, workdir, cfg, samples_dir=FLAGS.samples_dir)
    print((workdir / "summary.md").read_text())


if __name__ == "__main__":
    app.run(main)
