"""How many samples does an axis need, and which method gives the best edits? (axis quality)

Data, drawn once (`draw_quality_data`; resumable shards):
  pool   P = 2·N_max labelled samples (seed s), N_max the largest sample count;
  fresh  H held-out samples + M edit faces (seed s + 1, independent of the pool).
Repeat r of R: the pool is a circle of P rows and the repeat starts at row o_r = ⌊r·P/R⌋.
Its training sequence is the N_max rows o_r, o_r + 1, … (mod P) and sample count N uses the
first N of them (nested, so one sampling run serves every N); its reference set is the other
N_max rows. So within a repeat the reference is independent of every training set, and the
training sets of two repeats are disjoint while N ≤ P/R (above, neighbours share N − P/R rows).
Per (method, N, repeat) the method is fitted with `fit_axes` (no holdout: fresh data serve)
and, per attribute a with unit axis n_a, the columns of axis_quality.csv are
  split_half_cosine  cos between the fits on the two random halves of the N rows;
  reference_cosine   cos(n_a, reference axis: same method on the repeat's N_max reference rows);
  truth_cosine       cos(n_a, true axis) when the truth is known (synthetic tests), else empty;
  heldout_auc        AUC of z·n_a against y_a > 0 on the fresh samples (binary attributes);
  heldout_r2         corr(z·n_a, t_a)² on the fresh samples, t the OLS target (binary logits
                     clipped to ±logit_clip as TL-GAN does): the R² of the best affine
                     predictor along the axis, comparable across methods;
  edit_success_up / _down   fraction of the M edit faces whose re-scored y_a rises after
                     z + λ n_a / falls after z − λ n_a; edit_success = their mean;
  leakage, leakage_locked   max over b ≠ a of |E[a, b]|, E the entanglement matrix
        E[a, b] = (mean Δy_b / sd_b) / (mean Δy_a / sd_a), Δy = y(z + λ n_a) − y(z − λ n_a),
                     sd over the fresh samples (change of b per unit change of a, both in
                     standard deviations), with n_a as fitted / made orthogonal to every
                     other axis first (TL-GAN's lock); every entry is in entanglement.csv;
  candidate, candidate_corr  (sefa, ganspace) index of the best-matching candidate direction
                     and its |corr| with the attribute on the training rows;
  fit_seconds, note;
with independent judges (`judges=`: extractors that only re-score the edit faces; an axis is
judged by the attributes of its group, `extractors.EQUIVALENT_ATTRIBUTES`, scored by another net):
  judge_<b>_success_up / _down   edit success of the (free) axis measured on judge column b;
  independent_success_up / _down / independent_success   their mean over the axis's judges;
with a face `descriptor=` (identity, editing.py's module doc):
  identity_kept_up / _down / identity_kept   share of edit faces whose descriptor stays within
                     the same-person threshold after z ± λ n_a (free axis), and their mean;
  distance_per_unit  mean descriptor distance per latent unit of edit.
Targets per method: ols the OLS target t; logistic the labels y > 0, continuous attributes
split at the pool's median; svm the raw scores (extremes); sefa/ganspace match on t.
Re-scoring after edits is one batched, jitted labelling call per configuration for all
attributes, signs and lock states; directions already scored (unsupervised methods pick from
a fixed candidate set) are reused.
The files, aggregation over repeats, the OLS theory curves, the plot and the summary are in
bench/reports.py; the machine and load lines in bench/machine.py.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import jax
import numpy as np
from absl import logging

from tlgan_jax import metrics
from tlgan_jax.axes import orthogonal_to_others
from tlgan_jax.bench import machine, reports
from tlgan_jax.bench.reports import write_reports
from tlgan_jax.discover import edit_evaluator
from tlgan_jax.editing import (
    edit_effects,
    identity_effects,
    judged_effects,
    judges_for,
    scores_after_edits,
)
from tlgan_jax.files import write_json
from tlgan_jax.fit import METHODS, UNSUPERVISED, clip_logits, fit_axes, method_targets
from tlgan_jax.fit import unsupervised as un
from tlgan_jax.sampling import Sampler

SUPERVISED = ("ols", "logistic", "svm")
CPU_SAMPLE_COUNTS = (1000, 2000, 5000, 10000, 20000, 50000, 100000)
GPU_SAMPLE_COUNTS = CPU_SAMPLE_COUNTS + (200000, 500000, 1000000)


def default_sample_counts(backend: str | None = None) -> tuple[int, ...]:
    """1K … 100K on CPU; up to 1M on an accelerator."""
    backend = backend or jax.default_backend()
    return CPU_SAMPLE_COUNTS if backend == "cpu" else GPU_SAMPLE_COUNTS


@dataclasses.dataclass(frozen=True)
class QualityConfig:
    sample_counts: tuple[int, ...] = CPU_SAMPLE_COUNTS
    methods: tuple[str, ...] = SUPERVISED + UNSUPERVISED
    repeats: int = 3
    seed: int = 0
    heldout_samples: int = 10000
    edit_faces: int = 128
    step: float = 3.0                   # λ, latent units
    logit_clip: float = 3.0             # OLS target: binary logits clipped to ±logit_clip
    max_n: Mapping[str, int] = dataclasses.field(default_factory=dict)  # per-method cap on N
    num_directions: int = 20            # sefa / ganspace candidates
    ganspace_samples: int = 20000       # unlabelled latents for GANSpace's PCA (and as many
                                        # again for its regression back to z)
    batch_size: int = 256
    shard_size: int = 4096
    progress: bool = True

    def __post_init__(self):
        counts = tuple(sorted({int(n) for n in self.sample_counts}))
        if not counts or counts[0] < 4:
            raise ValueError(f"sample_counts must be integers >= 4, got {self.sample_counts}")
        object.__setattr__(self, "sample_counts", counts)
        object.__setattr__(self, "methods", tuple(self.methods))
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise ValueError(f"unknown method(s) {unknown or '(none given)'}; known: "
                             f"{sorted(METHODS)}")
        if self.repeats < 1:
            raise ValueError(f"repeats must be >= 1, got {self.repeats}")
        if self.heldout_samples < 2 or self.edit_faces < 1:
            raise ValueError(f"need heldout_samples >= 2 and edit_faces >= 1, got "
                             f"{self.heldout_samples}, {self.edit_faces}")
        bad = {m: v for m, v in self.max_n.items() if m not in self.methods or int(v) < 1}
        if bad:
            raise ValueError(f"max_n: entries {bad} name no benchmarked method or are < 1")

    @property
    def n_max(self) -> int:
        return self.sample_counts[-1]

    def counts_for(self, method: str) -> tuple[int, ...]:
        cap = self.max_n.get(method)
        return tuple(n for n in self.sample_counts if cap is None or n <= cap)


@dataclasses.dataclass(frozen=True)
class QualityData:
    """Latents (as the generator sees them) and scores: pool [P = 2·N_max], fresh held-out,
    edit faces; `names`/`binary` per score column."""
    z_pool: np.ndarray
    y_pool: np.ndarray
    z_heldout: np.ndarray
    y_heldout: np.ndarray
    z_edit: np.ndarray
    y_edit: np.ndarray
    names: tuple[str, ...]
    binary: tuple[bool, ...]

    def __post_init__(self):
        pairs = (("pool", self.z_pool, self.y_pool), ("heldout", self.z_heldout, self.y_heldout),
                 ("edit", self.z_edit, self.y_edit))
        d = self.z_pool.shape[1] if self.z_pool.ndim == 2 else None
        for what, z, y in pairs:
            if z.ndim != 2 or y.ndim != 2 or z.shape[0] != y.shape[0] or z.shape[1] != d:
                raise ValueError(f"quality data: {what} latents {z.shape} and scores {y.shape} "
                                 f"must be [n, d={d}] and [n, k] with the same n")
            if y.shape[1] != len(self.names):
                raise ValueError(f"quality data: {what} scores have {y.shape[1]} columns for "
                                 f"{len(self.names)} names")
        if len(self.binary) != len(self.names):
            raise ValueError("quality data: one binary flag per attribute is needed")


def repeat_rows(pool_size: int, n_max: int, repeats: int, r: int) -> tuple[np.ndarray, np.ndarray]:
    """(training sequence [n_max], reference rows [pool_size − n_max]) of repeat r: the arc of
    the pool circle starting at ⌊r·pool_size/repeats⌋, and the rest (see module doc)."""
    if pool_size < 2 * n_max:
        raise ValueError(f"the pool has {pool_size} rows; N_max = {n_max} needs 2·N_max = "
                         f"{2 * n_max} (training + independent reference)")
    if not 0 <= r < repeats:
        raise ValueError(f"repeat {r} out of range for {repeats} repeats")
    start = (r * pool_size) // repeats
    circle = (start + np.arange(pool_size)) % pool_size
    return circle[:n_max], circle[n_max:n_max + n_max]


class EditScorer:
    """Edit success and entanglement (`evaluate` module doc, scores in units of `scale`) of
    directions on fixed faces: one batched labelling call per `evaluate`; a direction within
    `tol` (max abs difference) of one scored before reuses its scores."""

    def __init__(self, label: Callable[[np.ndarray], np.ndarray], z: np.ndarray, y0: np.ndarray,
                 step: float, scale: np.ndarray, tol: float = 1e-5, *,
                 judges: Mapping[int, Sequence[int]] | None = None,
                 descriptor: tuple[Sequence[int], float] | None = None):
        """y0 [N, m]: scores of the m columns of `label`; the k attributes edited are its first
        columns (scale [k] their units), the rest judge columns (`judges`: attribute index ->
        column indices) and descriptor columns (`descriptor`: (columns, threshold))."""
        self.label, self.z, self.y0 = label, np.asarray(z, np.float32), np.asarray(y0)
        self.step, self.tol = float(step), tol
        self.k = len(scale)
        self.scale = np.concatenate([np.asarray(scale, np.float64),
                                     np.ones(self.y0.shape[1] - self.k)])
        self.judges = {int(a): [int(b) for b in bs] for a, bs in (judges or {}).items()}
        self.descriptor = descriptor
        self._dirs = np.zeros((0, self.z.shape[1]), np.float32)
        self._plus: list[np.ndarray] = []        # scores at z + λn per cached direction
        self._minus: list[np.ndarray] = []
        self.labelled = 0

    def _find(self, n: np.ndarray) -> int:
        if not self._dirs.shape[0]:
            return -1
        dist = np.max(np.abs(self._dirs - n[None, :]), axis=1)
        i = int(np.argmin(dist))
        return i if dist[i] <= self.tol else -1

    def _scores(self, directions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(y_plus, y_minus) [k, N, m] for directions [k, d], labelling only new ones."""
        todo: list[np.ndarray] = []
        for n in directions:
            if self._find(n) < 0 and not any(np.max(np.abs(n - m)) <= self.tol for m in todo):
                todo.append(n)
        if todo:
            y_plus, y_minus = scores_after_edits(self.label, self.z, np.stack(todo), self.step)
            self.labelled += 2 * len(todo) * self.z.shape[0]
            self._dirs = np.concatenate([self._dirs, np.stack(todo)])
            self._plus += list(y_plus)
            self._minus += list(y_minus)
        idx = [self._find(n) for n in directions]
        return np.stack([self._plus[i] for i in idx]), np.stack([self._minus[i] for i in idx])

    def evaluate(self, free: np.ndarray, locked: np.ndarray | None) -> dict[str, np.ndarray]:
        """free, locked: [d, k] directions of the k attributes (locked may have NaN columns:
        no locked direction). Returns success_up/down [k], entanglement free/locked [k, k];
        with judges "judged" {a: {column: (success_up, success_down)}} and with a descriptor
        identity_kept_up/down and distance_per_unit [k], all of the free directions."""
        free = np.asarray(free, np.float32)
        k = free.shape[1]
        if k != self.k:
            raise ValueError(f"EditScorer: {k} directions for {self.k} attributes")
        ok = [a for a in range(k) if locked is not None and np.all(np.isfinite(locked[:, a]))]
        dirs = np.concatenate([free.T] + ([np.asarray(locked, np.float32)[:, ok].T] if ok else []))
        y_plus, y_minus = self._scores(dirs)
        cols = list(range(k)) + ok
        up, down, ent = edit_effects(self.y0, y_plus, y_minus, cols, self.scale)
        ent = ent[:, :k]                                # attribute columns only
        ent_locked = np.full((k, k), np.nan)
        ent_locked[ok] = ent[k:]
        out = {"success_up": up[:k], "success_down": down[:k], "entanglement": ent[:k],
               "entanglement_locked": ent_locked}
        if self.judges:
            out["judged"] = judged_effects(self.y0, y_plus, y_minus, self.judges)
        if self.descriptor:
            out.update(zip(("identity_kept_up", "identity_kept_down", "distance_per_unit"),
                           identity_effects(self.y0, y_plus[:k], y_minus[:k],
                                            self.descriptor[0], self.descriptor[1],
                                            self.step)))
        return out


def _max_off_target(row: np.ndarray, a: int) -> float:
    others = np.delete(row, a)
    if others.size == 0 or not np.all(np.isfinite(others)):
        return float("nan")
    return float(np.max(np.abs(others)))


@dataclasses.dataclass
class QualityResult:
    rows: list[dict]                    # one per (method, N, repeat, attribute): CSV_COLUMNS
    entanglement: list[dict]            # one per (method, N, repeat, attribute, other)
    meta: dict


def run_quality(data: QualityData, label: Callable[[np.ndarray], np.ndarray],
                cfg: QualityConfig, method_opts: Mapping[str, Mapping[str, Any]] | None = None,
                truth: np.ndarray | None = None, log: Callable[[str], None] | None = None,
                on_method_done: Callable[[QualityResult], None] | None = None, *,
                scored: Sequence[str] | None = None,
                judges: Mapping[str, Sequence[str]] | None = None,
                descriptor: tuple[Sequence[str], float] | None = None) -> QualityResult:
    """Every (method, N, repeat) of `cfg` on `data` (see module doc).

    label: latents [n, d] -> scores [n, len(scored)] (for the edits; e.g. `Sampler.label`);
    scored: its columns (default data.names; else data.names followed by judge and descriptor
    columns, and the edit faces are re-labelled with it once);
    judges: attribute -> judge columns of `scored` (`editing.judges_for`);
    descriptor: (descriptor columns of `scored`, same-person threshold);
    method_opts: extra `fit_axes` options per method (e.g. sefa/ganspace `directions`);
    truth: optional true axes [d, k] (synthetic data) for the truth_cosine column;
    on_method_done: called with the partial result after every (method, repeat).
    """
    log = log or (lambda s: None)
    method_opts = dict(method_opts or {})
    names, binary, k = data.names, data.binary, len(data.names)
    pool = data.z_pool.shape[0]
    thresholds = np.median(data.y_pool, axis=0)
    t_heldout = clip_logits(data.y_heldout, binary, cfg.logit_clip)
    scale = np.std(data.y_heldout.astype(np.float64), axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    scored = tuple(names if scored is None else scored)
    if scored[:k] != tuple(names):
        raise ValueError(f"run_quality: the labeller's columns {list(scored)} must start with "
                         f"the data's attributes {list(names)}")
    y0 = data.y_edit if len(scored) == k else np.asarray(label(data.z_edit))
    judge_cols = {names.index(a): [scored.index(b) for b in bs]
                  for a, bs in (judges or {}).items() if a in names and bs}
    scorer = EditScorer(label, data.z_edit, y0, cfg.step, scale, judges=judge_cols,
                        descriptor=(None if descriptor is None else
                                    ([scored.index(c) for c in descriptor[0]], descriptor[1])))
    truth = None if truth is None else np.asarray(truth, np.float64)
    result = QualityResult([], [], {"pool": pool, "n_max": cfg.n_max, "names": list(names),
                                    "binary": list(binary), "timings": {}})
    counts = cfg.sample_counts
    for method in cfg.methods:
        t_method = time.perf_counter()
        opts = dict(method_opts.get(method, {}))
        y_fit, bin_fit = method_targets(method, data.y_pool, binary, cfg.logit_clip, thresholds)
        for r in range(cfg.repeats):
            train, ref_rows = repeat_rows(pool, cfg.n_max, cfg.repeats, r)
            reference = fit_axes(data.z_pool[ref_rows], y_fit[ref_rows], method, names, bin_fit,
                                 holdout=0.0, split_half=False, **opts)
            ref_dirs = np.asarray(reference.directions, np.float64)
            for n in cfg.counts_for(method):
                rows = train[:n]
                key = jax.random.fold_in(jax.random.key(cfg.seed), r * 1000 + counts.index(n))
                t0 = time.perf_counter()
                note = ""
                try:
                    axes = fit_axes(data.z_pool[rows], y_fit[rows], method, names, bin_fit,
                                    holdout=0.0, key=key, **opts)
                except ValueError as e:          # e.g. too few rows for a method
                    note = f"fit failed: {e}"
                    axes = None
                fit_s = time.perf_counter() - t0
                if axes is None:
                    for a in names:
                        result.rows.append(_empty_row(method, n, r, a, note))
                    log(f"{method} N={n} repeat {r}: {note}")
                    continue
                dirs = np.asarray(axes.directions, np.float64)
                scores = data.z_heldout.astype(np.float64) @ dirs
                auc = metrics.roc_auc_columns(scores, data.y_heldout > 0)
                r2 = metrics.corr2_columns(scores, t_heldout)
                ref_cos = metrics.cosine(dirs, ref_dirs)
                true_cos = metrics.cosine(dirs, truth) if truth is not None else [None] * k
                locked = orthogonal_to_others(axes, strict=False)
                edits = scorer.evaluate(np.asarray(axes.directions, np.float32), locked)
                for a, name in enumerate(names):
                    dg = axes.diagnostics[name]
                    up, down = edits["success_up"][a], edits["success_down"][a]
                    result.rows.append({
                        "method": method, "n": n, "repeat": r, "attribute": name,
                        "split_half_cosine": dg.get("split_half_cosine"),
                        "reference_cosine": float(ref_cos[a]),
                        "truth_cosine": None if true_cos[a] is None else float(true_cos[a]),
                        "heldout_auc": float(auc[a]) if binary[a] else None,
                        "heldout_r2": float(r2[a]),
                        "edit_success": float((up + down) / 2), "edit_success_up": float(up),
                        "edit_success_down": float(down),
                        "leakage": _max_off_target(edits["entanglement"][a], a),
                        "leakage_locked": _max_off_target(edits["entanglement_locked"][a], a),
                        "candidate": dg.get("candidate"),
                        "candidate_corr": dg.get("candidate_corr"),
                        "fit_seconds": fit_s, "note": note,
                        **_judge_cells(edits, a, scored), **_identity_cells(edits, a)})
                    for b, other in enumerate(names):
                        if b != a:
                            result.entanglement.append({
                                "method": method, "n": n, "repeat": r, "attribute": name,
                                "other": other, "free": float(edits["entanglement"][a, b]),
                                "locked": float(edits["entanglement_locked"][a, b])})
                log(f"{method:9s} N={n:>8d} repeat {r}: " + ", ".join(
                    f"{row['attribute']} split-half {reports.fmt(row['split_half_cosine'])} ref "
                    f"{reports.fmt(row['reference_cosine'])} edit "
                    f"{reports.fmt(row['edit_success'])}"
                    for row in result.rows[-k:]))
            if on_method_done is not None:
                on_method_done(result)
        result.meta["timings"][method] = time.perf_counter() - t_method
    result.meta["edit_labels"] = scorer.labelled
    return result


def _judge_cells(edits: dict, a: int, scored: Sequence[str]) -> dict:
    """judge_<b>_success_up/_down per judge b of attribute a, and their mean over judges."""
    judged = edits.get("judged", {}).get(a)
    if not judged:
        return {}
    cells = {}
    for b, (u, v) in judged.items():
        cells[f"judge_{scored[b]}_success_up"] = u
        cells[f"judge_{scored[b]}_success_down"] = v
    up = float(np.mean([u for u, _ in judged.values()]))
    down = float(np.mean([v for _, v in judged.values()]))
    return {**cells, "independent_success_up": up, "independent_success_down": down,
            "independent_success": (up + down) / 2}


def _identity_cells(edits: dict, a: int) -> dict:
    if "distance_per_unit" not in edits:
        return {}
    up, down = float(edits["identity_kept_up"][a]), float(edits["identity_kept_down"][a])
    return {"identity_kept_up": up, "identity_kept_down": down,
            "identity_kept": (up + down) / 2,
            "distance_per_unit": float(edits["distance_per_unit"][a])}


def _empty_row(method, n, r, attribute, note) -> dict:
    row = {c: None for c in reports.CSV_COLUMNS}
    row.update(method=method, n=n, repeat=r, attribute=attribute, note=note)
    return row


# ----------------------------------------------------------------------------- the whole job

def draw_quality_data(sampler, cfg: QualityConfig, samples_dir: str | Path | None) -> QualityData:
    """Label the pool (seed) and the fresh held-out + edit set (seed + 1) with `sampler`
    (a `tlgan_jax.sampling.Sampler`); shards go to samples_dir/{pool,fresh} (resumable)."""
    gen = sampler.gen
    sub = (lambda name: Path(samples_dir) / name) if samples_dir is not None else (lambda _: None)
    pool = sampler.run(cfg.seed, 2 * cfg.n_max, sub("pool"), shard_size=cfg.shard_size,
                       progress=cfg.progress)
    fresh = sampler.run(cfg.seed + 1, cfg.heldout_samples + cfg.edit_faces, sub("fresh"),
                        shard_size=cfg.shard_size, progress=cfg.progress)
    canon = lambda z: np.asarray(gen.canonical_latents(z), np.float32)
    h = cfg.heldout_samples
    return QualityData(canon(pool.z), pool.y, canon(fresh.z[:h]), fresh.y[:h],
                       canon(fresh.z[h:]), fresh.y[h:], pool.names, pool.binary)


def unsupervised_candidates(gen, cfg: QualityConfig) -> dict[str, dict]:
    """fit_axes options with precomputed candidates for the unsupervised methods in cfg."""
    opts = {}
    if "sefa" in cfg.methods:
        opts["sefa"] = {"directions": un.sefa_directions(un.first_layer_weight(gen),
                                                         cfg.num_directions)[0]}
    if "ganspace" in cfg.methods:
        draw = lambda kk, n: gen.canonical_latents(gen.sample_latents(kk, n))
        key = jax.random.fold_in(jax.random.key(cfg.seed), 7_000_001)
        opts["ganspace"] = {"directions": un.ganspace_directions(
            un.first_layer_features(gen), gen.latent_dim, key, cfg.num_directions,
            cfg.ganspace_samples, sample_latents=draw)[0]}
    return opts


def benchmark_axis_quality(gen, extractors: Sequence[Any], workdir: str | Path,
                           cfg: QualityConfig = QualityConfig(),
                           samples_dir: str | Path | None = None,
                           log: Callable[[str], None] = logging.info, *,
                           judges: Sequence[Any] = (), descriptor: Any = None,
                           groups: Sequence[Sequence[str]] | None = None) -> QualityResult:
    """The whole benchmark: draw data, fit every (method, N, repeat), score edits, and write
    WORKDIR/axis_quality.csv, entanglement.csv, axis_quality.png, summary.md and meta.json.

    judges: extractors that only re-score the edit faces (independent judges: the attributes
    of each axis's group in `groups`, default `extractors.EQUIVALENT_ATTRIBUTES`);
    descriptor: a `FaceDescriptor` for the identity columns (module doc)."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    samples_dir = workdir / "samples" if samples_dir is None else samples_dir
    t_start, cpu_start = time.perf_counter(), machine.cpu_seconds()
    load_start = machine.machine_line()
    loads = [machine.load1()]
    sampler = Sampler(gen, extractors, batch_size=cfg.batch_size)
    t = time.perf_counter()
    data = draw_quality_data(sampler, cfg, samples_dir)
    sampling_s = time.perf_counter() - t
    n_labelled = data.z_pool.shape[0] + data.z_heldout.shape[0] + data.z_edit.shape[0]
    log(f"sampling: {n_labelled} labelled samples in {sampling_s:.0f} s")
    loads.append(machine.load1())
    t = time.perf_counter()
    opts = unsupervised_candidates(gen, cfg)
    candidates_s = time.perf_counter() - t

    evaluator = edit_evaluator(gen, sampler, judges, descriptor, cfg.batch_size)
    judge_map = judges_for(data.names, evaluator.names, groups) if evaluator is not sampler \
        else {}
    judge_names = list(dict.fromkeys(b for bs in judge_map.values() for b in bs))
    columns = reports.csv_columns(judge_names, descriptor is not None)

    def save(result: QualityResult) -> None:
        loads.append(machine.load1())
        reports.write_csv(result.rows, workdir / "axis_quality.csv", columns)
        reports.write_csv(result.entanglement, workdir / "entanglement.csv",
                          reports.ENTANGLEMENT_COLUMNS)

    t = time.perf_counter()
    result = run_quality(data, evaluator.label, cfg, opts, log=log, on_method_done=save,
                         scored=evaluator.names, judges=judge_map,
                         descriptor=(None if descriptor is None else
                                     (descriptor.columns, descriptor.threshold)))
    evaluate_s = time.perf_counter() - t
    save(result)
    total_s = time.perf_counter() - t_start
    cpu_s = machine.cpu_seconds() - cpu_start
    exts = [e.name for e in sampler.extractors]
    result.meta.update(
        latent_dim=gen.latent_dim, generator=gen.name, extractors=exts,
        judges=[e.name for e in judges],
        judge_attributes={a: list(b) for a, b in judge_map.items()},
        descriptor=None if descriptor is None else descriptor.name,
        title=f"{gen.name} × {', '.join(exts)}",
        setup=(f"Methods {', '.join(cfg.methods)}; N = "
               f"{', '.join(f'{n:,}' for n in cfg.sample_counts)}"
               + (f" (caps: {dict(cfg.max_n)})" if cfg.max_n else "")
               + f"; {cfg.repeats} repeats (circular pool of {2 * cfg.n_max:,} samples, seed "
               f"{cfg.seed}: disjoint training sets up to N = {2 * cfg.n_max // cfg.repeats:,}, "
               f"reference = the other {cfg.n_max:,}); fresh samples (seed {cfg.seed + 1}): "
               f"{cfg.heldout_samples:,} held-out, {cfg.edit_faces} edit faces; λ = {cfg.step:g}; "
               f"OLS targets clip binary logits to ±{cfg.logit_clip:g}; sefa/ganspace: "
               f"{cfg.num_directions} candidates (GANSpace PCA on {cfg.ganspace_samples:,} "
               f"unlabelled latents)."
               + (" Independent judges: " + "; ".join(f"{a} by {', '.join(b)}" for a, b in
                                                       judge_map.items()) + "."
                  if judge_map else "")
               + (f" Identity: {descriptor.name} descriptor, same person below "
                  f"{descriptor.threshold:g}." if descriptor is not None else "")),
        timing=(f"Wall time {total_s / 60:.1f} min: sampling {sampling_s:.0f} s "
                f"({n_labelled / max(sampling_s, 1e-9):.0f} labelled samples/s), unsupervised "
                f"candidates {candidates_s:.0f} s, fits + edits {evaluate_s:.0f} s ("
                + ", ".join(f"{m} {s:.0f} s" for m, s in result.meta["timings"].items())
                + f"; {result.meta['edit_labels']:,} edited faces re-scored). Process CPU time "
                f"{cpu_s / 60:.1f} min (user + system, all threads), the load-independent "
                f"measure of the work: with the cores to itself the run takes about this long "
                f"or less."),
        machine=(f"Machine at start: {load_start}. At end: {machine.machine_line()}. 1-min load "
                 f"average sampled {len(loads)} times during the run: mean "
                 f"{np.nanmean(loads):.1f}, "
                 f"min {np.nanmin(loads):.1f}, max {np.nanmax(loads):.1f} (other jobs were "
                 f"running when the load exceeds the core count)."),
        wall_seconds=total_s, sampling_seconds=sampling_s, cpu_seconds=cpu_s)
    result.meta["plot_title"] = (f"Axis quality vs N: {result.meta['title']} (λ = {cfg.step:g}, "
                                 f"{cfg.repeats} repeats)")
    write_json(workdir / "meta.json", result.meta)
    write_reports(workdir, result.rows, result.meta)
    return result

