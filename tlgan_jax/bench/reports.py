"""Reports of the axis-quality benchmark (bench/axis_quality.py): its CSV files, aggregation
over repeats, the OLS theory curves, the plot and the markdown summary.

Rows are dicts with the columns CSV_COLUMNS (axis_quality.csv) or ENTANGLEMENT_COLUMNS
(entanglement.csv); None / NaN are written as empty cells. `aggregate` groups rows by
(method, attribute) and N: mean and standard deviation over the repeats (NaN ignored).
Theory (OLS, z ~ N(0, I_d), population R²; ANCHORS §1): with a = d·(1 − R²)/R², two
independent fits on N/2 samples each have split-half cosine 1/(1 + 2a/N), which reaches t at
N = 2a·t/(1 − t).
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from tlgan_jax.files import atomic_open, atomic_write
from tlgan_jax.fit import UNSUPERVISED

CSV_COLUMNS = ("method", "n", "repeat", "attribute", "split_half_cosine", "reference_cosine",
               "truth_cosine", "heldout_auc", "heldout_r2", "edit_success", "edit_success_up",
               "edit_success_down", "leakage", "leakage_locked", "candidate", "candidate_corr",
               "fit_seconds", "note")
JUDGE_COLUMNS = ("independent_success", "independent_success_up", "independent_success_down")
IDENTITY_COLUMNS = ("identity_kept", "identity_kept_up", "identity_kept_down",
                    "distance_per_unit")
ENTANGLEMENT_COLUMNS = ("method", "n", "repeat", "attribute", "other", "free", "locked")
PLOT_PANELS = (("split_half_cosine", "split-half cosine"),
               ("reference_cosine", "cosine to reference axis"),
               ("heldout", "held-out AUC (binary) / R² (continuous)"),
               ("edit_success", "edit success (±λ)"),
               ("leakage", "off-target leakage, free"),
               ("leakage_locked", "off-target leakage, others locked"))


def csv_columns(judges: Sequence[str] = (), identity: bool = False) -> tuple[str, ...]:
    """axis_quality.csv's columns: CSV_COLUMNS, then with independent judges (attribute names
    of the judging nets) judge_<b>_success_up/_down per judge and JUDGE_COLUMNS, then with a
    face descriptor IDENTITY_COLUMNS."""
    cols = list(CSV_COLUMNS)
    if judges:
        cols += [f"judge_{b}_success_{s}" for b in judges for s in ("up", "down")]
        cols += list(JUDGE_COLUMNS)
    if identity:
        cols += list(IDENTITY_COLUMNS)
    return tuple(cols)


def fmt(v, spec: str = ".3f") -> str:
    """`v` formatted with `spec`, or "-" for None / NaN / inf."""
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)


# ----------------------------------------------------------------------------- files

def write_csv(rows: Sequence[Mapping[str, Any]], path: str | Path,
              columns: Sequence[str] = CSV_COLUMNS) -> Path:
    """Rows as CSV with exactly `columns` (None / NaN written as empty cells)."""
    with atomic_open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(columns), extrasaction="raise")
        w.writeheader()
        for row in rows:
            w.writerow({c: _cell(row.get(c)) for c in columns})
    return Path(path)


def _cell(v) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return ""
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.6g}"
    return str(v)


def read_csv(path: str | Path) -> list[dict]:
    """Rows of a CSV written by `write_csv`: numbers parsed, empty cells as None."""
    out = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            parsed = {}
            for c, v in row.items():
                if v == "" or v is None:
                    parsed[c] = None
                elif c in ("n", "repeat", "candidate"):
                    parsed[c] = int(v)
                elif c in ("method", "attribute", "other", "note"):
                    parsed[c] = v
                else:
                    parsed[c] = float(v)
            out.append(parsed)
    return out


# ----------------------------------------------------------------------------- aggregation

def _value(row: Mapping, metric: str) -> float:
    if metric == "heldout":
        v = row.get("heldout_auc")
        v = row.get("heldout_r2") if v is None else v
    else:
        v = row.get(metric)
    return float("nan") if v is None else float(v)


def aggregate(rows: Sequence[Mapping], metric: str) -> dict[tuple[str, str], tuple]:
    """{(method, attribute): (N [n], mean [n], std [n], repeats [n])} over repeats (NaN ignored)."""
    groups: dict[tuple[str, str, int], list[float]] = {}
    for row in rows:
        groups.setdefault((row["method"], row["attribute"], int(row["n"])), []).append(
            _value(row, metric))
    out: dict[tuple[str, str], list] = {}
    for (m, a, n), vals in sorted(groups.items()):
        v = np.array([x for x in vals if math.isfinite(x)])
        mean = float(v.mean()) if v.size else float("nan")
        std = float(v.std()) if v.size > 1 else 0.0 if v.size else float("nan")
        out.setdefault((m, a), []).append((n, mean, std, int(v.size)))
    return {key: tuple(np.array(c) for c in zip(*vals)) for key, vals in out.items()}


def theory_split_half(n, r2: float, latent_dim: int):
    """OLS theory: split-half cosine 1/(1 + 2a/N), a = d(1 − R²)/R² (module doc)."""
    a = latent_dim * (1 - r2) / r2
    return 1.0 / (1.0 + 2.0 * a / np.asarray(n, np.float64))


def theory_n_for_split_half(target: float, r2: float, latent_dim: int) -> float:
    """N at which the OLS split-half cosine reaches `target`: 2a·t/(1 − t)."""
    if not 0 < r2 < 1:
        return float("nan")
    a = latent_dim * (1 - r2) / r2
    return 2 * a * target / (1 - target)


def first_n_reaching(n: np.ndarray, values: np.ndarray, target: float,
                     interpolate: bool = True) -> float:
    """Smallest N where the curve reaches `target`: the first grid point that does, or (with
    interpolate) the crossing interpolated linearly in log N between it and the point before;
    −inf if the first point already does, +inf if none does."""
    n, values = np.asarray(n, np.float64), np.asarray(values, np.float64)
    hit = np.flatnonzero(values >= target)
    if hit.size == 0:
        return float("inf")
    i = int(hit[0])
    if i == 0:
        return float("-inf")
    v0, v1 = values[i - 1], values[i]
    if not interpolate or not np.isfinite(v0):
        return float(n[i])
    f = (target - v0) / (v1 - v0)
    return float(np.exp(np.log(n[i - 1]) + f * (np.log(n[i]) - np.log(n[i - 1]))))


# ----------------------------------------------------------------------------- plot

def plot_panels(rows: Sequence[Mapping]) -> list[tuple[str, str]]:
    """(metric, title) of the plot's columns: PLOT_PANELS; with independent judges the
    edit-success panel shows them beside the own judge ("judges"), so no panel shows an axis's
    success by its own net alone; with a face descriptor, identity kept."""
    panels = list(PLOT_PANELS)
    if any(r.get("independent_success") is not None for r in rows):
        k = [metric for metric, _ in panels].index("edit_success")
        panels[k] = ("judges", "edit success (±λ): own judge (solid), independent (dashed)")
    if any(r.get("identity_kept") is not None for r in rows):
        panels.append(("identity_kept", "identity kept (±λ)"))
    return panels


def plot_quality(rows: Sequence[Mapping], path: str | Path, *, latent_dim: int | None = None,
                 title: str = "") -> Path:
    """Metric vs N (log axis), mean ± std over repeats, one panel per metric (columns) and
    attribute (rows), one line per method; with latent_dim, the OLS theory for the split-half
    cosine (R² from OLS's held-out R² at the largest N) as a dashed line."""
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    attributes = list(dict.fromkeys(r["attribute"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    colours = {m: f"C{i}" for i, m in enumerate(methods)}
    panels = plot_panels(rows)
    stats = {metric: aggregate(rows, metric) for metric, _ in panels if metric != "judges"}
    if "judges" in dict(panels):
        stats["judges"] = aggregate(rows, "edit_success")
        stats["independent_success"] = aggregate(rows, "independent_success")
    r2_curves = aggregate(rows, "heldout_r2")
    fig, axs = plt.subplots(len(attributes), len(panels),
                            figsize=(3.3 * len(panels), 2.8 * len(attributes) + 0.6),
                            squeeze=False)
    for i, attr in enumerate(attributes):
        for j, (metric, label) in enumerate(panels):
            ax = axs[i, j]
            if metric == "judges":          # the independent judges' curves, dashed
                for m in methods:
                    n, mean, _, _ = stats["independent_success"].get((m, attr), ((),) * 4)
                    ok = np.isfinite(np.asarray(mean, np.float64))
                    if ok.any():
                        ax.plot(np.asarray(n)[ok], np.asarray(mean)[ok], "s--", ms=3,
                                color=colours[m], label=f"{m}, independent")
            for m in methods:
                if (m, attr) not in stats[metric]:
                    continue
                n, mean, std, _ = stats[metric][(m, attr)]
                ok = np.isfinite(mean)
                if not ok.any():
                    continue
                ax.plot(n[ok], mean[ok], "o-", ms=3, color=colours[m], label=m)
                low = mean - std
                if metric.startswith("leakage"):        # log axis: keep the band positive
                    low = np.maximum(low, mean / 10)
                ax.fill_between(n[ok], low[ok], (mean + std)[ok], color=colours[m],
                                alpha=0.2, lw=0)
            if metric == "split_half_cosine" and latent_dim and ("ols", attr) in r2_curves:
                n, r2, _, _ = r2_curves[("ols", attr)]
                if np.isfinite(r2[-1]) and 0 < r2[-1] < 1:
                    grid = np.geomspace(n[0], n[-1], 60)
                    ax.plot(grid, theory_split_half(grid, r2[-1], latent_dim), "k--", lw=1,
                            label="OLS theory")
                    ax.text(0.03, 0.96, f"dashed: OLS theory, R² = {r2[-1]:.3f}", fontsize=7,
                            ha="left", va="top", transform=ax.transAxes)
            if metric.startswith("leakage"):
                ax.set_yscale("log")
            ax.set_xscale("log")
            ax.grid(True, which="both", alpha=0.3)
            if i == 0:
                ax.set_title(label, fontsize=9)
            if i == len(attributes) - 1:
                ax.set_xlabel("samples N")
            if j == 0:
                ax.set_ylabel(attr)
            ax.tick_params(labelsize=7)
            if i == 0 and j == 0:
                ax.legend(fontsize=7, loc="lower right")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_open(path) as f:
        fig.savefig(f, dpi=110, format="png")
    plt.close(fig)
    return Path(path)


# ----------------------------------------------------------------------------- summary

def _n_str(v: float) -> str:
    if v == float("inf"):
        return "not reached"
    if v == float("-inf"):
        return "≤ first N"
    if not math.isfinite(v):
        return "-"
    return f"{v:,.0f}"


def summary_markdown(rows: Sequence[Mapping], meta: Mapping[str, Any]) -> str:
    """Markdown: N for split-half 0.95 / 0.99 per method and attribute with the OLS theory,
    and every metric at the largest N (mean ± std over repeats)."""
    d = meta.get("latent_dim")
    split = aggregate(rows, "split_half_cosine")
    r2 = aggregate(rows, "heldout_r2")
    attributes = list(dict.fromkeys(r["attribute"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    lines = [f"# Axis quality vs sample count: {meta.get('title', '')}".rstrip(), ""]
    for key in ("setup", "timing", "machine"):
        if meta.get(key):
            lines += [meta[key], ""]
    lines += ["## When does the split-half cosine reach 0.95 / 0.99?", "",
              ("N interpolated in log N between grid points (mean over repeats; sefa/ganspace: "
               "the first grid N). OLS theory "
               "(ANCHORS §1): a fit on n samples has cos(fit, truth) ≈ (1 + a/n)^(-1/2) with "
               "a = d·(1 − R²)/R², so the split-half cosine (two fits on N/2) is 1/(1 + 2a/N) "
               "and reaches t at N = 2a·t/(1 − t); R² is OLS's held-out R² at the largest N. "
               "For sefa/ganspace the split-half cosine is 1 when both halves pick the same "
               "candidate and about 0 otherwise, so its mean is the rate of stable picks."), "",
              "| attribute | method | N for 0.95 | N for 0.99 | split-half at largest N |",
              "|---|---|---|---|---|"]
    for attr in attributes:
        if ("ols", attr) in r2 and d:
            rr = float(r2[("ols", attr)][1][-1])
            lines.append(f"| {attr} | OLS theory (R² = {rr:.3f}, a = "
                         f"{d * (1 - rr) / rr if 0 < rr < 1 else float('nan'):,.0f}) | "
                         f"{_n_str(theory_n_for_split_half(0.95, rr, d))} | "
                         f"{_n_str(theory_n_for_split_half(0.99, rr, d))} | "
                         f"{fmt(float(theory_split_half(meta.get('n_max', 0), rr, d)))} |")
        for m in methods:
            if (m, attr) not in split:
                continue
            n, mean, std, _ = split[(m, attr)]
            interp = m not in UNSUPERVISED          # a rate of stable picks: grid N only
            lines.append(f"| {attr} | {m} | {_n_str(first_n_reaching(n, mean, 0.95, interp))} | "
                         f"{_n_str(first_n_reaching(n, mean, 0.99, interp))} | "
                         f"{fmt(mean[-1])} ± {fmt(std[-1])} (N = {int(n[-1]):,}) |")
    judged = any(r.get("independent_success") is not None for r in rows)
    ident = any(r.get("identity_kept") is not None for r in rows)
    extra = (["independent_success"] if judged else []) + (
        ["identity_kept", "distance_per_unit"] if ident else [])
    lines += ["", "## At the largest N of each method (mean ± std over repeats)", "",
              ("edit success: fraction of fresh faces whose attribute moves the intended way "
               "after ±λ (mean of both signs), by the net that defined the axis (own judge)"
               + (" and by the same attribute scored by an unrelated net (independent judge, "
                  "mean over judges)" if judged else "")
               + "; leakage: largest |change of another attribute| "
               "per unit change of this one (both in standard deviations), free / others "
               "locked."
               + (" Identity kept: share of faces whose face descriptor stays within the "
                  "same-person threshold after ±λ; distance / unit: mean descriptor distance "
                  "per latent unit of edit." if ident else "")),
              "", ("| attribute | method | N | cos to reference | held-out AUC / R² | "
                   "edit success, own judge | "
                   + ("edit success, independent judge | " if judged else "")
                   + ("identity kept | distance / unit | " if ident else "")
                   + "leakage free | leakage locked | best candidate (|corr|) |"),
              "|---|---|---|---|---|---|" + "---|" * len(extra) + "---|---|---|"]
    stats = {m: aggregate(rows, m) for m in ("reference_cosine", "heldout", "edit_success",
                                             "leakage", "leakage_locked", "candidate_corr",
                                             *extra)}
    for attr in attributes:
        for m in methods:
            if (m, attr) not in stats["reference_cosine"]:
                continue
            n = stats["reference_cosine"][(m, attr)][0]
            cells = []
            for metric in ("reference_cosine", "heldout", "edit_success", *extra, "leakage",
                           "leakage_locked"):
                _, mean, std, _ = stats[metric][(m, attr)]
                cells.append(f"{fmt(mean[-1])} ± {fmt(std[-1])}")
            cand = ""
            if m in UNSUPERVISED:
                picks = [r for r in rows if r["method"] == m and r["attribute"] == attr
                         and int(r["n"]) == int(n[-1]) and r.get("candidate") is not None]
                corr = stats["candidate_corr"][(m, attr)][1][-1]
                cand = f"{sorted({int(p['candidate']) for p in picks})} ({fmt(corr)})"
            lines.append(f"| {attr} | {m} | {int(n[-1]):,} | " + " | ".join(cells) + f" | {cand} |")
    if judged:
        lines += by_sign_markdown(rows, attributes, methods, ident)
    notes = sorted({r["note"] for r in rows if r.get("note")})
    if notes:
        lines += ["", "Notes:"] + [f"- {x}" for x in notes]
    return "\n".join(lines) + "\n"


def by_sign_markdown(rows: Sequence[Mapping], attributes: Sequence[str],
                     methods: Sequence[str], identity: bool) -> list[str]:
    """Markdown lines: edit success per sign (+λ raises / −λ lowers), own judge beside every
    independent judge (and identity kept), at the largest N of each supervised method; then
    per attribute the (method, N) whose worse sign under the independent judges is best."""
    judges = list(dict.fromkeys(c[len("judge_"):-len("_success_up")] for r in rows for c in r
                                if c.startswith("judge_") and c.endswith("_success_up")))
    pairs = [("own judge", "edit_success")] + [(f"judge {b}", f"judge_{b}_success")
                                               for b in judges]
    if identity:
        pairs.append(("identity kept", "identity_kept"))
    stats = {f"{col}_{s}": aggregate(rows, f"{col}_{s}") for _, col in pairs
             for s in ("up", "down")}
    stats["min"] = aggregate([{**r, "worst": float(np.minimum(
        _value(r, "independent_success_up"), _value(r, "independent_success_down")))}
        for r in rows], "worst")
    lines = ["", "## Edit success by sign: own judge beside the independent judges", "",
             "+λ raises / −λ lowers, share of the fresh faces (mean over repeats), at the "
             "largest N of each method. The independent judges are nets that did not define "
             "the axis; the aim (issue 12) is ≥ 0.85 for both signs under them.", "",
             "| attribute | method | N | " + " | ".join(f"{h} +λ / −λ" for h, _ in pairs)
             + " |", "|---|---|---|" + "---|" * len(pairs)]
    supervised = [m for m in methods if m not in UNSUPERVISED]
    for attr in attributes:
        for m in supervised:
            if (m, attr) not in stats["edit_success_up"]:
                continue
            n = stats["edit_success_up"][(m, attr)][0]
            cells = [f"{fmt(stats[f'{col}_up'][(m, attr)][1][-1], '.2f')} / "
                     f"{fmt(stats[f'{col}_down'][(m, attr)][1][-1], '.2f')}"
                     for _, col in pairs]
            lines.append(f"| {attr} | {m} | {int(n[-1]):,} | " + " | ".join(cells) + " |")
    lines += ["", "Best under the independent judges over every supervised method and N (the "
              "(method, N) with the highest worse-sign success, mean over repeats; ties: the "
              "smaller N):", ""]
    up, down = (aggregate(rows, f"independent_success_{s}") for s in ("up", "down"))
    for attr in attributes:
        best = max(((float(mean), -int(n), m) for m in supervised if (m, attr) in stats["min"]
                    for n, mean in zip(*stats["min"][(m, attr)][:2]) if math.isfinite(mean)),
                   default=None)                      # ties: the smaller N
        if best is None:
            continue
        _, n, m = best
        n = -n
        at = list(stats["min"][(m, attr)][0]).index(n)
        lines.append(f"- {attr}: {m} at N = {n:,}: +λ {fmt(up[(m, attr)][1][at], '.2f')} / "
                     f"−λ {fmt(down[(m, attr)][1][at], '.2f')}")
    return lines


def write_reports(workdir: str | Path, rows: Sequence[Mapping] | None = None,
                  meta: Mapping[str, Any] | None = None) -> None:
    """(Re)write WORKDIR/axis_quality.png and summary.md, by default from the
    axis_quality.csv and meta.json that a benchmark run left there."""
    workdir = Path(workdir)
    rows = read_csv(workdir / "axis_quality.csv") if rows is None else rows
    meta = json.loads((workdir / "meta.json").read_text()) if meta is None else meta
    plot_quality(rows, workdir / "axis_quality.png", latent_dim=meta.get("latent_dim"),
                 title=meta.get("plot_title", ""))
    atomic_write(workdir / "summary.md", summary_markdown(rows, meta))
