r"""Invert photos into the generator's latent space (real-photo editing), with quality figures.

  python experiments/invert.py --photos=me.jpg --out=runs/invert
  python experiments/invert.py --astronaut --axes=runs/discover/axes.npz \
      --edits=male:-3,male:3,age:3,happy:3 --out=runs/invert
  python experiments/invert.py --generated=8 --out=runs/invert_known   # faces with known z

Photos are framed like the generator's faces (`tlgan_jax.invert.frame_face`: face detection with
scikit-image when installed, else the centre square; or --box / --framing). For each photo it
writes OUT/<name>_z.npy (the latent [1, d]), OUT/<name>.png (crop | reconstruction | edits),
and OUT/summary.{json,md} with PSNR/SSIM per photo. --generated=N inverts N of the generator's
own faces (where the optimum is known) and compares with the mean-face baseline (the average
of 512 generated images) and G(0).
"""
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from tlgan_jax.axes import Axes
from tlgan_jax.editing import edit_latents
from tlgan_jax.invert import InversionConfig, Inverter, frame_face, psnr, ssim
from tlgan_jax.plots import image_grid, save_png
from tlgan_jax.extractors import EMBEDDED_EXTRACTORS, load_extractor
from tlgan_jax.generators import EMBEDDED_GENERATOR, load_generator

_C = InversionConfig()
FLAGS = flags.FLAGS
flags.DEFINE_list("photos", [], "Photo files to invert (PNG, JPEG, …).")
flags.DEFINE_bool("astronaut", False, "Also invert scikit-image's astronaut photo (offline).")
flags.DEFINE_integer("generated", 0, "Invert this many generated faces with known z instead.")
flags.DEFINE_string("out", "runs/invert", "Output directory.")
flags.DEFINE_string("generator", EMBEDDED_GENERATOR, "Generator (see tlgan_jax.generators).")
flags.DEFINE_list("extractors", list(EMBEDDED_EXTRACTORS),
                  "Extractors whose scores form the feature loss (empty: pixel loss only).")
flags.DEFINE_enum("framing", "auto", ["auto", "center", "full"],
                  "auto: detect the face and frame it like the generator's faces.")
flags.DEFINE_list("box", [], "Crop box left,top,right,bottom in pixels (overrides --framing).")
flags.DEFINE_integer("steps", _C.steps, "Adam steps on z.")
flags.DEFINE_integer("restarts", _C.restarts, "Starts optimised at once (best kept).")
flags.DEFINE_integer("init_pool", _C.init_pool, "Random z scored to choose the starts.")
flags.DEFINE_float("learning_rate", _C.learning_rate, "Adam step on z (cosine-decayed).")
flags.DEFINE_float("lowres_weight", _C.lowres_weight, "Weight of the 16×16 pixel loss.")
flags.DEFINE_float("feature_weight", _C.feature_weight, "λ of the extractor-score loss.")
flags.DEFINE_float("prior_weight", _C.prior_weight, "Weight of ‖z‖²/d.")
flags.DEFINE_integer("refine_steps", _C.refine_steps,
                     "Per-photo generator refinement steps after z (0: off).")
flags.DEFINE_float("refine_learning_rate", _C.refine_learning_rate, "Adam step of refinement.")
flags.DEFINE_float("anchor_weight", _C.anchor_weight, "Pull of refined weights to the original.")
flags.DEFINE_string("axes", None, "axes.npz for before/after edits (optional).")
flags.DEFINE_list("edits", ["male:-3", "male:3", "age:3", "happy:3"],
                  "Edits shown after the reconstruction, ATTRIBUTE:AMOUNT (with --axes).")
flags.DEFINE_list("lock", [], "Attributes locked while editing (TL-GAN lock).")
flags.DEFINE_integer("seed", 0, "Random seed (starts; generated faces use seed + 1).")


def _config() -> InversionConfig:
    return InversionConfig(steps=FLAGS.steps, restarts=FLAGS.restarts, init_pool=FLAGS.init_pool,
                           learning_rate=FLAGS.learning_rate, lowres_weight=FLAGS.lowres_weight,
                           feature_weight=FLAGS.feature_weight, prior_weight=FLAGS.prior_weight,
                           refine_steps=FLAGS.refine_steps,
                           refine_learning_rate=FLAGS.refine_learning_rate,
                           anchor_weight=FLAGS.anchor_weight)


def _photos() -> list[tuple[str, object]]:
    photos = [(Path(p).stem, p) for p in FLAGS.photos]
    if FLAGS.astronaut:
        from skimage import data          # scikit-image: only for this offline sample photo
        photos.append(("astronaut", data.astronaut()))
    return photos


def _edit_columns(gen, axes, z, params):
    """Images [len(edits), R, R, 3] of z edited by each --edits entry."""
    cols, labels = [], []
    for spec in FLAGS.edits:
        name, _, amount = spec.partition(":")
        z2 = edit_latents(gen, z[None], axes, {name: float(amount)},
                          lock=[n for n in FLAGS.lock if n != name])
        cols.append(np.asarray(gen.apply(params, z2))[0])
        labels.append(f"{name} {float(amount):+g}")
    return cols, labels


def run_generated(gen, inverter, out: Path) -> dict:
    n = FLAGS.generated
    z_true = gen.sample_latents(jax.random.key(FLAGS.seed + 1), n)
    targets = gen(z_true)
    t = time.perf_counter()
    inverter.warmup(n)
    compile_s = time.perf_counter() - t
    t = time.perf_counter()
    result = inverter(targets, jax.random.key(FLAGS.seed))
    seconds = time.perf_counter() - t
    mean_face = jnp.mean(gen(gen.sample_latents(jax.random.key(10_000), 512)), 0, keepdims=True)
    mean_face = jnp.broadcast_to(mean_face, targets.shape)
    g0 = jnp.broadcast_to(gen(jnp.zeros((1, gen.latent_dim))), targets.shape)
    z_hat, zt = result.z, np.asarray(z_true)
    cos = np.sum(z_hat * zt, 1) / np.linalg.norm(z_hat, axis=1) / np.linalg.norm(zt, axis=1)
    summary = {
        "faces": n, "seconds": seconds, "compile_seconds": compile_s,
        "config": {k: getattr(inverter.config, k) for k in inverter.config.__dataclass_fields__},
        "psnr": result.psnr.tolist(), "ssim": result.ssim.tolist(), "latent_cosine": cos.tolist(),
        "mean_face_psnr": psnr(mean_face, targets).tolist(),
        "mean_face_ssim": ssim(mean_face, targets).tolist(),
        "g0_psnr": psnr(g0, targets).tolist(),
    }
    grid = np.stack([np.asarray(targets), result.images], 0)          # rows: target, inverted
    save_png(image_grid(grid, ["target", "inverted"], [f"{p:.1f} dB" for p in result.psnr]),
             out / "generated.png")
    lines = ["| | PSNR (dB) | SSIM |", "|---|---|---|",
             f"| inverted (mean of {n}) | {np.mean(summary['psnr']):.2f} | "
             f"{np.mean(summary['ssim']):.3f} |",
             f"| mean-face baseline | {np.mean(summary['mean_face_psnr']):.2f} | "
             f"{np.mean(summary['mean_face_ssim']):.3f} |",
             f"| G(0) | {np.mean(summary['g0_psnr']):.2f} | |",
             f"\nlatent cosine(ẑ, z) mean {np.mean(cos):.3f}; {seconds:.1f} s for {n} faces "
             f"(after {compile_s:.1f} s of compilation)."]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    return summary


def run_photos(gen, inverter, out: Path) -> dict:
    axes = Axes.load(FLAGS.axes, gen.latent_dim, gen.name) if FLAGS.axes else None
    box = [float(v) for v in FLAGS.box] if FLAGS.box else None
    rows, row_labels, summary, col_labels = [], [], {"photos": {}}, ["photo (framed)", "inverted"]
    t = time.perf_counter()
    inverter.warmup(1)
    summary["compile_seconds"] = time.perf_counter() - t
    for name, photo in _photos():
        target, info = frame_face(photo, gen.resolution, box=box, framing=FLAGS.framing)
        t = time.perf_counter()
        result = inverter(target[None], jax.random.key(FLAGS.seed))
        seconds = time.perf_counter() - t
        params = result.params_for(0) if result.params is not None else gen.params
        np.save(out / f"{name}_z.npy", result.z)
        row = [target, result.images[0]]
        if axes is not None:
            cols, labels = _edit_columns(gen, axes, result.z[0], params)
            row += cols
            col_labels = ["photo (framed)", "inverted"] + labels
        save_png(image_grid(np.stack(row)[None], [], col_labels, cell=128), out / f"{name}.png")
        rows.append(row)
        row_labels.append(name)
        summary["photos"][name] = {"psnr": float(result.psnr[0]), "ssim": float(result.ssim[0]),
                                   "seconds": seconds, **info}
        print(f"{name}: PSNR {result.psnr[0]:.2f} dB, SSIM {result.ssim[0]:.3f}, "
              f"{seconds:.1f} s, framing {info['framing']} {info['box']}")
    if len(rows) > 1:
        save_png(image_grid(np.stack(rows), row_labels, col_labels, cell=128),
                 out / "photos.png")
    lines = ["| photo | PSNR (dB) | SSIM | framing | seconds |", "|---|---|---|---|---|"]
    lines += [f"| {k} | {v['psnr']:.2f} | {v['ssim']:.3f} | {v['framing']} | {v['seconds']:.1f} |"
              for k, v in summary["photos"].items()]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    return summary


def main(argv):
    del argv
    out = Path(FLAGS.out)
    out.mkdir(parents=True, exist_ok=True)
    gen = load_generator(FLAGS.generator)
    extractors = [load_extractor(e) for e in FLAGS.extractors] if FLAGS.feature_weight else []
    inverter = Inverter(gen, extractors, _config())
    if FLAGS.generated:
        summary = run_generated(gen, inverter, out)
    else:
        if not FLAGS.photos and not FLAGS.astronaut:
            raise app.UsageError("give --photos, --astronaut or --generated=N")
        summary = run_photos(gen, inverter, out)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print((out / "summary.md").read_text())


if __name__ == "__main__":
    app.run(main)
