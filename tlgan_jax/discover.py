"""The main job, end to end: sample and label, fit axes, evaluate edits, write results; and
`default_axes`, the same sampling and fit for (generator, extractors), cached.

WORKDIR/
  samples/            (z, y) shards of the sampling run (resumable)
  axes.npz            the fitted axes with metadata and diagnostics
  traversal_<attr>.png   faces (rows) moved along each axis (columns)
  summary.md, summary.json   diagnostics and edit figures per attribute

Edits are scored by the net that defined each axis ("own judge") and, when `judges` are given,
by the same attribute as scored by an unrelated net (`extractors.EQUIVALENT_ATTRIBUTES`), plus,
with a face `descriptor`, the share of faces that keep their identity. Judges and the descriptor run
only on the evaluation faces, never on the samples the axes are fitted on.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import jax
import numpy as np
from absl import logging
from tqdm.auto import tqdm

from tlgan_jax.axes import Axes
from tlgan_jax.combine import (
    check_combine,
    combination_judges,
    combinations_from_metadata,
    combine_scores,
    combined_label,
    lock_exceptions,
    parse_combine,
)
from tlgan_jax.editing import edit_directions, edit_report, judges_for, render_traversal
from tlgan_jax.extractors import as_extractor
from tlgan_jax.files import atomic_write, file_lock, write_json
from tlgan_jax.fit import fit_axes_in, method_targets
from tlgan_jax.generators import Generator
from tlgan_jax.plots import image_grid, save_png
from tlgan_jax.sampling import Sampler
from tlgan_jax.store import Samples
from tlgan_jax.weights import pinned


@dataclasses.dataclass(frozen=True)
class DiscoverConfig:
    num_samples: int = 16384
    seed: int = 0
    method: str = "ols"
    batch_size: int = 256
    shard_size: int = 4096
    logit_clip: float = 3.0          # TL-GAN: binary logits clipped to [-3, 3] before OLS
    eval_faces: int = 256            # fresh faces for edit success / entanglement
    eval_step: float = 3.0           # λ: latent units moved for the edit figures
    traversal_faces: int = 6
    traversal_steps: tuple[float, ...] = (-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0)
    progress: bool = True
    latent_space: str = "z"          # z, or w / w+ for style-based generators (StyleGAN2)
    # ensemble targets, "name=src1,src2" (`combine.parse_combine`): one more attribute, the
    # mean of the standardised source scores, fitted and judged like the others
    combine: tuple[str, ...] = ()


def discover_axes(gen: Generator, extractors: Sequence[Any], workdir: str | Path,
                  cfg: DiscoverConfig = DiscoverConfig(), *, judges: Sequence[Any] = (),
                  descriptor: Any = None,
                  groups: Sequence[Sequence[str]] | None = None,
                  combine: Mapping[str, Sequence[str]] | None = None) -> tuple[Axes, dict]:
    """Sample, label, fit one axis per attribute, evaluate edits, and write WORKDIR files.

    judges: extra extractors that only re-score the edits (independent judges);
    descriptor: a `FaceDescriptor` for the identity figures; groups: which attributes are the
    same concept across nets (default `extractors.EQUIVALENT_ATTRIBUTES`); combine: ensemble
    targets {name: sources} in addition to `cfg.combine` (`tlgan_jax.combine`): each gets an
    axis, judged by its combined score (own judge) and by each source (independent judges)."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    timings = {}
    gen.check_space(cfg.latent_space)
    sampler = Sampler(gen, extractors, batch_size=cfg.batch_size)
    check_combine(combine_specs(cfg, combine), sampler.names)   # before any sampling
    t = time.perf_counter()
    samples = sampler.run(cfg.seed, cfg.num_samples, workdir / "samples",
                          shard_size=cfg.shard_size, progress=cfg.progress)
    timings["sampling_s"] = time.perf_counter() - t

    t = time.perf_counter()
    _say(cfg, f"fitting {len(samples.names)} axes ({cfg.method}) on {len(samples.z)} samples "
              f"in {cfg.latent_space} space...")
    axes = fit_samples(sampler, samples, cfg, combine=combine)
    combos = combinations_from_metadata(axes.metadata)
    timings["fit_s"] = time.perf_counter() - t
    _say(cfg, f"fitted in {timings['fit_s']:.1f} s")
    gen_z, gen = gen, gen.in_space(cfg.latent_space)   # evaluation and traversals in that space
    axes.save(workdir / "axes.npz")

    t = time.perf_counter()
    key = jax.random.fold_in(jax.random.key(cfg.seed), 1_000_003)  # disjoint from sample shards
    z_eval = np.asarray(gen.canonical_latents(gen.sample_latents(key, cfg.eval_faces)))
    evaluator = edit_evaluator(gen, sampler, judges, descriptor, cfg.batch_size)
    with tqdm(total=cfg.eval_faces * (1 + 4 * len(axes.names)), desc="evaluating edits",
              unit="faces", disable=not cfg.progress) as bar:
        label, scored = combined_label(_counting(evaluator.label, bar, 4 * evaluator.batch_size),
                                       evaluator.names, combos)
        kw: dict[str, Any] = dict(
            step=cfg.eval_step, y0=label(z_eval),
            judges={**judges_for(axes.names, scored, groups),
                    **combination_judges(combos, scored)},
            descriptor=(descriptor.columns, descriptor.threshold) if descriptor else None)
        free = edit_report(label, scored, z_eval, axes, **kw)
        locked = edit_report(label, scored, z_eval, axes, lock_others=True,
                             lock_except=lock_exceptions(combos), **kw)
    timings["evaluation_s"] = time.perf_counter() - t

    t = time.perf_counter()
    write_traversals(gen, axes, z_eval[:cfg.traversal_faces], workdir, cfg.traversal_steps,
                     title=f"({cfg.method}, {cfg.num_samples} samples)", progress=cfg.progress)
    timings["traversals_s"] = time.perf_counter() - t

    summary = {"generator": gen_z.name, "latent_space": cfg.latent_space,
               "extractors": [e.name for e in sampler.extractors],
               "judges": [e.name for e in judges],
               "descriptor": descriptor.name if descriptor is not None else None,
               "combine": {c.name: list(c.sources) for c in combos},
               "method": cfg.method, "num_samples": cfg.num_samples, "seed": cfg.seed,
               "diagnostics": axes.diagnostics, "edits": free.as_dict(),
               "edits_locked": locked.as_dict(), "timings": timings,
               "samples_per_second": cfg.num_samples / max(timings["sampling_s"], 1e-9)}
    write_json(workdir / "summary.json", summary)
    atomic_write(workdir / "summary.md", summary_markdown(summary))
    return axes, summary


def combine_specs(cfg: DiscoverConfig, combine: Mapping[str, Sequence[str]] | None = None
                  ) -> dict[str, tuple[str, ...]]:
    """{name: sources} of `cfg.combine` ("name=src1,src2" strings) and `combine` together."""
    specs = parse_combine(cfg.combine, "DiscoverConfig.combine")
    for name, sources in (combine or {}).items():
        if name in specs:
            raise ValueError(f"combine: the combined attribute {name!r} is given twice "
                             f"(in DiscoverConfig.combine and in combine=)")
        specs[name] = tuple(sources)
    return specs


def fit_samples(sampler: Sampler, samples: Samples, cfg: DiscoverConfig = DiscoverConfig(),
                *, combine: Mapping[str, Sequence[str]] | None = None) -> Axes:
    """Step 4 of the main job: `cfg.method` fitted in `cfg.latent_space` (z: the generator's
    canonical latents; w / w+ of style-based generators) on `fit.method_targets` of the scores
    (OLS: binary logits clipped to ±cfg.logit_clip, as TL-GAN), split key key(seed + 1);
    metadata names generator, extractors and sampling. Ensemble targets (`cfg.combine` and
    `combine`) are added as columns first (`combine.combine_scores`, sources' binary logits
    clipped to ±cfg.logit_clip), their statistics stored in the metadata ("combine")."""
    gen = sampler.gen
    specs = combine_specs(cfg, combine)
    if specs:
        samples = combine_scores(samples, specs, clip=cfg.logit_clip)
    y, binary = method_targets(cfg.method, samples.y, samples.binary, cfg.logit_clip)
    axes = fit_axes_in(gen, samples.z, y, cfg.latent_space, w=samples.w, method=cfg.method,
                       names=samples.names, binary=binary, key=jax.random.key(cfg.seed + 1))
    return axes.with_metadata(generator=gen.name, latent_dim=gen.space_dim(cfg.latent_space),
                              extractors=[e.name for e in sampler.extractors],
                              num_samples=int(samples.z.shape[0]), seed=cfg.seed,
                              logit_clip=cfg.logit_clip if cfg.method == "ols" else None,
                              **({"combine": samples.metadata["combine"]} if specs else {}))


def default_axes(gen: Generator, extractors: Sequence[Any], *, num_samples: int = 8192,
                 seed: int = 0, method: str = "ols", cache_dir: str | Path | None = None,
                 progress: bool = False) -> Axes:
    """The one way to get axes for (generator, extractors) without a workdir: sampled and
    fitted exactly as `discover_axes` does (its DiscoverConfig defaults, `fit_samples`),
    cached as an axes.npz under `cache_dir` (default: the weight cache's ``axes/``), keyed by
    generator, extractor names, method, sample count, seed, logit clip, shard size and the
    package version; only the first call samples and fits (under a file lock)."""
    cfg = DiscoverConfig(num_samples=num_samples, seed=seed, method=method, progress=progress)
    extractors = [as_extractor(e, gen.resolution) for e in extractors]
    key = {"generator": gen.name, "extractors": [e.name for e in extractors],
           "method": cfg.method, "num_samples": cfg.num_samples, "seed": cfg.seed,
           "logit_clip": cfg.logit_clip, "shard_size": cfg.shard_size, "version": _version()}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    cache_dir = Path(cache_dir) if cache_dir is not None else pinned.cache_dir() / "axes"
    path = cache_dir / f"{_safe(gen.name)[-40:]}-{cfg.method}-{cfg.num_samples}-{digest}.npz"
    with file_lock(path):
        if path.is_file():
            return Axes.load(path, gen.latent_dim, gen.name)
        sampler = Sampler(gen, extractors, batch_size=cfg.batch_size)    # only on a miss
        samples = sampler.run(cfg.seed, cfg.num_samples, shard_size=cfg.shard_size,
                              progress=cfg.progress)
        axes = fit_samples(sampler, samples, cfg).with_metadata(default_axes=key)
        axes.save(path)
    return axes


def _version() -> str:
    try:
        return importlib.metadata.version("tlgan_jax")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def edit_evaluator(gen: Generator, sampler: Sampler, judges: Sequence[Any] = (),
                   descriptor: Any = None, batch_size: int = 256) -> Sampler:
    """The labeller that re-scores edited faces: the sampler's extractors, then the judges'
    and the descriptor's columns, on `gen` (the latent space edits are made in); the sampler
    itself when that adds nothing."""
    extra = list(judges) + ([descriptor.as_extractor()] if descriptor is not None else [])
    if not extra and gen is sampler.gen:
        return sampler
    return Sampler(gen, list(sampler.extractors) + extra, batch_size=batch_size)


def judges_to_load(spec: Sequence[str], extractor_names: Sequence[str]) -> tuple[str, ...]:
    """Extractor names for discover_axes.py's --judges: "none" -> none, "auto" -> every
    embedded family that defined no axis (`extractors.default_judges`), else the names given."""
    from tlgan_jax.extractors import default_judges
    spec = tuple(spec)
    if spec == ("none",):
        return ()
    return default_judges(extractor_names) if spec == ("auto",) else spec


def relevant_judges(judges: Sequence[Any], extractors: Sequence[Any],
                    spec: Sequence[str]) -> list:
    """With --judges=auto, only the judges that score the concept of some attribute of the
    `extractors` (`extractors.EQUIVALENT_ATTRIBUTES`); judges named explicitly are all kept."""
    if tuple(spec) != ("auto",):
        return list(judges)
    names = [a for e in extractors for a in e.attributes]
    return [j for j in judges if judges_for(names, j.attributes)]


def write_traversals(gen: Generator, axes: Axes, z, out_dir: str | Path,
                     steps: Sequence[float], names: Sequence[str] | None = None,
                     lock: Sequence[str] = (), *, layers: Sequence[int] | None = None,
                     title: str = "", cell: int | None = None,
                     progress: bool = True) -> list[Path]:
    """One PNG per attribute, out_dir/traversal_<name>.png: the faces z (rows, in gen's latent
    space) moved along the attribute's axis (columns: `steps`), with the attributes in `lock`
    held fixed (TL-GAN's lock: the moved axis made orthogonal to the locked ones). layers: W /
    W+ axes applied only to those style inputs (`editing.render_traversal`)."""
    names = list(names or axes.names)
    z = np.asarray(z)
    paths = []
    with tqdm(total=len(names), desc="rendering traversals", unit="attributes",
              disable=not progress) as bar:
        for name in names:
            held = [n for n in lock if n != name]
            direction = np.asarray(edit_directions(axes, [name], held))[:, 0]
            imgs = render_traversal(gen, z, direction, steps, layers=layers)
            head = " ".join(p for p in (name, title) if p)
            head += f" (locked: {', '.join(held)})" if held else ""
            head += f" (style inputs {layers[0]}..{layers[-1]})" if layers else ""
            grid = image_grid(imgs, row_labels=[f"face {k}" for k in range(len(z))],
                              col_labels=[f"{s:+g}" for s in steps], title=head, cell=cell)
            paths.append(save_png(grid, Path(out_dir) / f"traversal_{_safe(name)}.png"))
            bar.update(1)
    return paths


def _counting(label: Callable[[np.ndarray], np.ndarray], bar: tqdm, chunk: int):
    """`label` run in chunks of `chunk` rows, each counted on the progress bar."""
    def counted(z):
        z = np.asarray(z)
        parts = []
        for s in range(0, len(z), chunk):
            parts.append(label(z[s:s + chunk]))
            bar.update(len(parts[-1]))
        return np.concatenate(parts)
    return counted


def _say(cfg: DiscoverConfig, message: str) -> None:
    if cfg.progress:
        logging.info(message)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def summary_markdown(s: dict) -> str:
    """A table per attribute: held-out quality, split-half cosine, edit success by the net
    that defined the axis ("own judge") and by independent judges, identity kept, and the
    largest off-target change before and after locking the other axes."""
    e, locked = s["edits"], s["edits_locked"]
    ident = e.get("identity")
    lines = [f"# Axes: {s['generator']} × {', '.join(s['extractors'])} ({s['method']}, "
             f"{s['num_samples']} samples, seed {s['seed']})", "",
             f"Sampling {s['samples_per_second']:.0f} labelled samples/s; fit "
             f"{s['timings']['fit_s']:.2f} s. Edits: ±{e['step']:g} latent units on "
             f"fresh faces; success = share of faces whose score moves the intended way.", ""]
    if s.get("judges"):
        lines += [f"Independent judges: {', '.join(s['judges'])} (attributes of the same name "
                  f"scored by an unrelated net; they took no part in defining the axes).", ""]
    if ident:
        lines += [f"Identity: share of faces whose {s['descriptor']} descriptor stays within "
                  f"{ident['threshold']:g} (same person) after +λ / −λ, and the mean descriptor "
                  f"distance per latent unit of edit.", ""]
    head = ["attribute", "held-out", "split-half cos", "own judge +λ / −λ",
            "independent judge +λ / −λ"]
    head += ["identity kept +λ / −λ", "distance / unit"] if ident else []
    head += ["largest off-target (free)", "same, others locked"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for a, d in s["diagnostics"].items():
        metric = (f"AUC {d['auc']:.3f}" if d.get("auc") is not None else
                  f"R² {d['r2']:.3f}" if d.get("r2") is not None else "-")
        judged = e.get("judges", {}).get(a, {})
        row = [a, metric, f"{d.get('split_half_cosine', float('nan')):.3f}",
               f"{e['success_up'][a]:.1%} / {e['success_down'][a]:.1%}",
               "; ".join(f"{b}: {v['success_up']:.1%} / {v['success_down']:.1%}"
                         for b, v in judged.items()) or "-"]
        if ident:
            row += [f"{ident['kept_up'][a]:.1%} / {ident['kept_down'][a]:.1%}",
                    f"{ident['distance_per_unit'][a]:.3f}"]
        same = {a, *judged, *(c for c, src in s.get("combine", {}).items() if a in src)}
        # the judges and the combinations made of `a` score the same concept: not off-target
        row += [_largest_off_target(e["entanglement"][a], same),
                _largest_off_target(locked["entanglement"][a], same)]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines + ["", SUMMARY_LEGEND]) + "\n"


SUMMARY_LEGEND = """\
Columns:
- **held-out**: on the 20% of samples kept out of the fit. Binary attributes (logits): AUC,
  how well z·axis ranks those samples by the sign of their score (0.5 chance, 1 perfect).
  Continuous ones: R², the share of the score's variance the linear fit explains.
  **AUC nan**: the held-out samples hold one class only (every score > 0, or every one ≤ 0),
  so there is nothing to rank; the axis may still be fine. Draw more samples, or check that
  the extractor suits these faces.
- **split-half cos**: cosine between the axes fitted on two disjoint halves of the training
  samples: 1 is stable; below ~0.95, more samples help.
- **own judge +λ / −λ**: the share of fresh faces whose score (by the net that defined the
  axis) rises when moved λ latent units along the axis / falls when moved −λ (λ above).
- **independent judge +λ / −λ**: the same, scored by an unrelated net's attribute of the same
  concept (it took no part in fitting); "-" when no judge scores this attribute.
- **identity kept +λ / −λ**, **distance / unit** (with a face descriptor): the share of faces
  that stay the same person after the edit, and the mean descriptor distance per latent unit.
- **largest off-target**: the other attribute that moves most, as its change per unit of
  this attribute's own change; *free* moves along the axis, *others locked* along the axis
  made orthogonal to every other one (TL-GAN's lock)."""


def _largest_off_target(row: dict, same: set) -> str:
    others = {b: v for b, v in row.items() if b not in same}
    if not others:
        return "-"
    b = max(others, key=lambda k: abs(others[k]))
    return f"{b} {others[b]:+.3f}"
