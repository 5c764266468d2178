r"""Discover attribute axes (TL-GAN): sample, label, fit, evaluate edits, write traversals.

  python experiments/discover_axes.py --workdir=runs/digiface
  python experiments/discover_axes.py --generator=pggan:karras2018iclr-celebahq-1024x1024.pkl \
      --extractors=celeba40:ckpt/celeba40 --num_samples=256000 --workdir=runs/celebahq
  python experiments/discover_axes.py --generator=stylegan2:stylegan2-ffhq-config-f.pkl \
      --latent_space=w --extractors=fa_age_gender --workdir=runs/ffhq_w

Writes WORKDIR/axes.npz, WORKDIR/traversal_<attribute>.png, WORKDIR/summary.{md,json} and the
resumable (z, y) shards in WORKDIR/samples/ (rerun the same command to resume a killed run).
"""
from absl import app, flags

from tlgan_jax.discover import DiscoverConfig, discover_axes
from tlgan_jax.editing import judges_for
from tlgan_jax.extractors import (EMBEDDED_EXTRACTORS, EQUIVALENT_ATTRIBUTES, default_judges,
                                  load_extractor, load_face_descriptor)
from tlgan_jax.generators import EMBEDDED_GENERATOR, load_generator

_D = DiscoverConfig()
FLAGS = flags.FLAGS
flags.DEFINE_string("generator", EMBEDDED_GENERATOR,
                    "Generator: 'digiface64' (embedded), 'pggan:PATH.pkl', 'pggan1024', "
                    "'stylegan2:PATH.pkl' or 'stylegan2-1024'.")
flags.DEFINE_enum("latent_space", _D.latent_space, ["z", "w", "w+"],
                  "Where the axes live: z (every generator), or W / W+ (StyleGAN2: w = the "
                  "mapping's output; w+ = one w per style input). Stored in axes.npz.")
flags.DEFINE_list("extractors", list(EMBEDDED_EXTRACTORS),
                  "Extractors: any of gender, age, emotion, fa_age_gender, fa_expression, "
                  "celeba40:CHECKPOINT_DIR.")
flags.DEFINE_list("judges", ["auto"],
                  "Extractors that only judge the edits (independent of the axes' nets): 'auto' "
                  "= every embedded family that defined no axis (Cydral/FER <-> face-api), "
                  "'none', or names as for --extractors.")
flags.DEFINE_string("identity", "faceapi",
                    "Face descriptor for the identity-kept figures ('faceapi'), or 'none'.")
flags.DEFINE_string("workdir", "runs/discover", "Output directory (created; reruns resume).")
flags.DEFINE_integer("num_samples", _D.num_samples, "Number of labelled samples (z, y) to draw.")
flags.DEFINE_integer("seed", _D.seed, "Random seed: same seed, same samples and axes.")
flags.DEFINE_enum("method", _D.method, ["ols", "logistic", "svm"],
                  "Axis fit: ols (TL-GAN), logistic (L2) or svm (InterFaceGAN, 2% extremes).")
flags.DEFINE_integer("batch_size", _D.batch_size, "Latents per device batch when labelling.")
flags.DEFINE_integer("shard_size", _D.shard_size, "Samples per on-disk shard (resume unit).")
flags.DEFINE_float("logit_clip", _D.logit_clip,
                   "OLS targets: binary logits clipped to [-c, c] (TL-GAN: 3).")
flags.DEFINE_integer("eval_faces", _D.eval_faces, "Fresh faces re-scored after edits.")
flags.DEFINE_float("eval_step", _D.eval_step, "Edit step λ (latent units) for edit figures.")
flags.DEFINE_integer("traversal_faces", _D.traversal_faces, "Rows (faces) per traversal PNG.")
flags.DEFINE_list("traversal_steps", [str(s) for s in _D.traversal_steps],
                  "Columns (steps along the axis) of each traversal PNG.")
flags.DEFINE_bool("fast", False, "Use the generator's bf16 fast path where it has one.")
flags.DEFINE_bool("progress", True, "Show a progress line with samples/s.")


def main(argv):
    del argv
    gen = load_generator(FLAGS.generator, fast=FLAGS.fast)
    extractors = [load_extractor(e) for e in FLAGS.extractors]
    cfg = DiscoverConfig(num_samples=FLAGS.num_samples, seed=FLAGS.seed, method=FLAGS.method,
                         batch_size=FLAGS.batch_size, shard_size=FLAGS.shard_size,
                         logit_clip=FLAGS.logit_clip, eval_faces=FLAGS.eval_faces,
                         eval_step=FLAGS.eval_step, traversal_faces=FLAGS.traversal_faces,
                         traversal_steps=tuple(float(s) for s in FLAGS.traversal_steps),
                         progress=FLAGS.progress, latent_space=FLAGS.latent_space)
    judges = [] if FLAGS.judges == ["none"] else [
        load_extractor(j) for j in (default_judges(FLAGS.extractors)
                                    if FLAGS.judges == ["auto"] else FLAGS.judges)]
    if FLAGS.judges == ["auto"]:   # keep the judges that score the concept of some attribute
        names = [a for e in extractors for a in e.attributes]
        judges = [j for j in judges if judges_for(names, j.attributes, EQUIVALENT_ATTRIBUTES)]
    descriptor = None if FLAGS.identity == "none" else load_face_descriptor(FLAGS.identity)
    _, summary = discover_axes(gen, extractors, FLAGS.workdir, cfg, judges=judges,
                               descriptor=descriptor)
    print((__import__("pathlib").Path(FLAGS.workdir) / "summary.md").read_text())


if __name__ == "__main__":
    app.run(main)
