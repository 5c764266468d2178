"""The inversion jobs of experiments/invert.py: photos (with optional edits) or generated faces
with known z, each written as PNG grids and OUT/summary.{md,json}.

  invert_photos     per photo: OUT/<name>_z.npy (the latent [1, d]), OUT/<name>.png (framed
                    photo | reconstruction | edits), PSNR/SSIM, framing; OUT/photos.png for
                    several photos
  invert_generated  N of the generator's own faces (the optimum is known): PSNR/SSIM, cosine
                    between ẑ and z, against the mean-face baseline (the average of 512
                    generated images) and G(0)
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from tqdm.auto import tqdm

from tlgan_jax.axes import Axes
from tlgan_jax.editing import edit_latents
from tlgan_jax.files import atomic_write, write_json
from tlgan_jax.generators import Generator
from tlgan_jax.invert import Inverter, frame_face
from tlgan_jax.metrics import psnr, ssim
from tlgan_jax.plots import image_grid, save_png


class _StageBars:
    """An `Inverter` progress callback: one progress line (steps/s) per stage."""

    def __init__(self, what: str):
        self.what, self.stage, self.bar = what, None, None

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage != self.stage:
            self.close()
            self.stage = stage
            desc = "optimising z" if stage == "z" else "tuning the generator"
            self.bar = tqdm(total=total, desc=f"{self.what}: {desc}", unit="steps")
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _edit_columns(gen: Generator, axes: Axes, z: np.ndarray, params,
                  edits: Sequence[tuple[str, float]], lock: Sequence[str]):
    """Images [len(edits), R, R, 3] of z [d] edited by each (attribute, amount)."""
    cols, labels = [], []
    for name, amount in edits:
        z2 = edit_latents(gen, z[None], axes, {name: amount}, lock=[n for n in lock if n != name])
        cols.append(np.asarray(gen.apply(params, z2))[0])
        labels.append(f"{name} {amount:+g}")
    return cols, labels


def invert_photos(gen: Generator, inverter: Inverter, photos: Sequence[tuple[str, Any]],
                  out: str | Path, *, axes: Axes | None = None,
                  edits: Sequence[tuple[str, float]] = (), lock: Sequence[str] = (),
                  box: Sequence[float] | None = None, framing: str = "auto",
                  seed: int = 0) -> dict:
    """Invert each (name, photo file or array); see the module doc. Returns the summary."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows, row_labels, summary = [], [], {"photos": {}}
    col_labels = ["photo (framed)", "inverted"]
    t = time.perf_counter()
    logging.info("compiling the inversion...")
    inverter.warmup(1)
    summary["compile_seconds"] = time.perf_counter() - t
    for name, photo in photos:
        target, info = frame_face(photo, gen.resolution, box=box, framing=framing)
        t = time.perf_counter()
        bars = _StageBars(name)
        result = inverter(target[None], jax.random.key(seed), progress=bars)
        bars.close()
        seconds = time.perf_counter() - t
        params = result.params_for(0) if result.params is not None else gen.params
        np.save(out / f"{name}_z.npy", result.z)
        row = [target, result.images[0]]
        if axes is not None and edits:
            cols, labels = _edit_columns(gen, axes, result.z[0], params, edits, lock)
            row += cols
            col_labels = ["photo (framed)", "inverted"] + labels
        save_png(image_grid(np.stack(row)[None], [], col_labels, cell=128), out / f"{name}.png")
        rows.append(row)
        row_labels.append(name)
        summary["photos"][name] = {"psnr": float(result.psnr[0]), "ssim": float(result.ssim[0]),
                                   "seconds": seconds, **info}
        logging.info(f"{name}: PSNR {result.psnr[0]:.2f} dB, SSIM {result.ssim[0]:.3f}, "
                     f"{seconds:.1f} s, framing {info['framing']} {info['box']}")
    if len(rows) > 1:
        save_png(image_grid(np.stack(rows), row_labels, col_labels, cell=128), out / "photos.png")
    lines = ["| photo | PSNR (dB) | SSIM | framing | seconds |", "|---|---|---|---|---|"]
    lines += [f"| {k} | {v['psnr']:.2f} | {v['ssim']:.3f} | {v['framing']} | {v['seconds']:.1f} |"
              for k, v in summary["photos"].items()]
    _write(out, summary, lines)
    return summary


def invert_generated(gen: Generator, inverter: Inverter, n: int, out: str | Path, *,
                     seed: int = 0) -> dict:
    """Invert n generated faces (latents from seed + 1); see the module doc."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    z_true = gen.sample_latents(jax.random.key(seed + 1), n)
    targets = gen(z_true)
    t = time.perf_counter()
    logging.info("compiling the inversion...")
    inverter.warmup(n)
    compile_s = time.perf_counter() - t
    t = time.perf_counter()
    bars = _StageBars(f"{n} generated faces")
    result = inverter(targets, jax.random.key(seed), progress=bars)
    bars.close()
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
    _write(out, summary, lines)
    return summary


def _write(out: Path, summary: dict, lines: list[str]) -> None:
    atomic_write(out / "summary.md", "\n".join(lines) + "\n")
    write_json(out / "summary.json", summary, indent=2)
