"""Ensemble targets: one attribute defined by several nets' scores of the same concept.

    c(x) = (1/J) sum_j (t_j(x) − μ_j) / σ_j

t_j is source j's score (a binary logit clipped to ±clip first, as the OLS targets; a
continuous score as given), μ_j and σ_j its mean and standard deviation on the samples the
axes are fitted on. The statistics are fixed at fitting time and stored in the axes'
metadata ("combine"), so evaluation and editing compute exactly the same score later.

Naming: the combined attribute gets its own name, never one of the scored columns
(`age_mix=age,fa_age`, not `age=age,fa_age`): the source nets keep their columns (and
axes), and they are the combination's independent judges.

    samples = combine_scores(samples, {"age_mix": ("age", "fa_age")})
    specs = parse_combine(["age_mix=age,fa_age"])        # the CLI / DiscoverConfig form
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from tlgan_jax.store import Samples

MAX_SOURCES = 16


@dataclasses.dataclass(frozen=True)
class Combination:
    """c = mean_j (clip_j(y[:, sources_j]) − mean_j) / std_j (module doc); clip_j is the
    bound of a binary source's logit, None for a continuous one."""
    name: str
    sources: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    clip: tuple[float | None, ...]

    def score(self, y: np.ndarray, names: Sequence[str]) -> np.ndarray:
        """The combined score [N] of scores y [N, len(names)]."""
        names = tuple(names)
        missing = [s for s in self.sources if s not in names]
        if missing:
            raise ValueError(f"combined attribute {self.name!r} needs the scores {missing}, "
                             f"which are not among the scored attributes {list(names)}: add "
                             f"the extractors that score them")
        y = np.asarray(y, np.float64)
        total = np.zeros(y.shape[0], np.float64)
        for s, m, sd, c in zip(self.sources, self.mean, self.std, self.clip):
            t = y[:, names.index(s)]
            if c is not None:
                t = np.clip(t, -c, c)
            total += (t - m) / sd
        return (total / len(self.sources)).astype(np.float32)

    def as_dict(self) -> dict:
        return {"name": self.name, "sources": list(self.sources), "mean": list(self.mean),
                "std": list(self.std), "clip": list(self.clip)}

    @classmethod
    def from_dict(cls, d: Any, where: str = "axes metadata 'combine'") -> Combination:
        """A Combination from `as_dict`'s form, read from a file: every field checked."""
        def bad(why):
            return ValueError(f"{where}: {why}; re-run the fit that wrote it")
        if not isinstance(d, dict):
            raise bad("each entry must be an object")
        name, sources = d.get("name"), d.get("sources")
        if not isinstance(name, str) or not name:
            raise bad("'name' must be a non-empty string")
        if (not isinstance(sources, list) or not 1 <= len(sources) <= MAX_SOURCES
                or not all(isinstance(s, str) and s for s in sources)):
            raise bad(f"{name}: 'sources' must be 1..{MAX_SOURCES} attribute names")
        k = len(sources)
        nums = {}
        for key in ("mean", "std", "clip"):
            v = d.get(key)
            if not isinstance(v, list) or len(v) != k:
                raise bad(f"{name}: {key!r} must be a list of {k} numbers")
            for x in v:
                ok = (x is None and key == "clip") or (
                    isinstance(x, (int, float)) and not isinstance(x, bool) and _finite(x))
                if not ok:
                    raise bad(f"{name}: {key!r} holds {x!r}, not a finite number")
            nums[key] = tuple(None if x is None else float(x) for x in v)
        if any(s <= 0 for s in nums["std"]):
            raise bad(f"{name}: 'std' must be positive")
        return cls(name, tuple(sources), nums["mean"], nums["std"], nums["clip"])


def _finite(x: int | float) -> bool:
    """A finite float (a JSON integer too large for a float is not)."""
    try:
        return math.isfinite(float(x))
    except OverflowError:
        return False


def parse_combine(specs: Sequence[str], flag: str = "--combine") -> dict[str, tuple[str, ...]]:
    """{name: sources} from strings "name=src1,src2[,...]" (the `DiscoverConfig.combine` and
    CLI form); one clear error naming `flag` for a malformed entry or a repeated name."""
    out: dict[str, tuple[str, ...]] = {}
    for spec in specs:
        name, eq, rest = str(spec).partition("=")
        name = name.strip()
        sources = tuple(s.strip() for s in rest.split(",")) if eq else ()
        if not eq or not name or len(sources) < 2 or not all(sources):
            raise ValueError(f"{flag}: {spec!r} is not NAME=SOURCE1,SOURCE2[,...] (e.g. "
                             f"age_mix=age,fa_age: the new attribute's name, then two or more "
                             f"scored attributes)")
        if name in out:
            raise ValueError(f"{flag}: the combined attribute {name!r} is given twice")
        out[name] = sources
    return out


def check_combine(combine: Mapping[str, Sequence[str]], names: Sequence[str]) -> None:
    """Refuse a combination whose name is a scored column (name clash), whose sources are not
    scored, repeated or fewer than two, or that combines another combination."""
    names = tuple(names)
    for name, sources in combine.items():
        sources = tuple(sources)
        if name in names:
            raise ValueError(f"combine: the combined attribute {name!r} has the name of a scored "
                             f"attribute; give it its own name, e.g. {name}_mix="
                             f"{','.join(sources)}")
        if len(sources) < 2 or len(set(sources)) != len(sources):
            raise ValueError(f"combine: {name!r} needs two or more distinct sources, got "
                             f"{list(sources)}")
        missing = [s for s in sources if s not in names]
        if missing:
            nested = [s for s in missing if s in combine]
            why = (f"{nested} are combinations themselves (combine the scored attributes "
                   f"directly)" if nested else
                   f"{missing} are not scored attributes (scored: {list(names)})")
            raise ValueError(f"combine: sources of {name!r}: {why}")
        if len(sources) > MAX_SOURCES:
            raise ValueError(f"combine: {name!r} has more than {MAX_SOURCES} sources")


def fit_combinations(y: np.ndarray, names: Sequence[str], binary: Sequence[bool],
                     combine: Mapping[str, Sequence[str]], clip: float = 3.0
                     ) -> tuple[Combination, ...]:
    """The combinations of `combine` {name: sources} with μ_j, σ_j measured on scores y
    [N, len(names)] (binary sources clipped to ±clip first)."""
    names = tuple(names)
    check_combine(combine, names)
    y = np.asarray(y, np.float64)
    out = []
    for name, sources in combine.items():
        mean, std, clips = [], [], []
        for s in sources:
            j = names.index(s)
            c = float(clip) if binary[j] else None
            t = np.clip(y[:, j], -c, c) if c is not None else y[:, j]
            sd = float(np.std(t))
            if not np.isfinite(sd) or sd <= 1e-12 * max(1.0, float(np.max(np.abs(t)))):
                raise ValueError(f"combine: source {s!r} of {name!r} is constant on the "
                                 f"fitting samples; it cannot be standardised")
            mean.append(float(np.mean(t)))
            std.append(sd)
            clips.append(c)
        out.append(Combination(name, tuple(sources), tuple(mean), tuple(std), tuple(clips)))
    return tuple(out)


def apply_combinations(y: np.ndarray, names: Sequence[str],
                       combos: Sequence[Combination]) -> tuple[np.ndarray, tuple[str, ...]]:
    """(y with one column per combination appended, the extended names)."""
    names = tuple(names)
    if not combos:
        return np.asarray(y), names
    cols = [c.score(y, names)[:, None] for c in combos]
    y = np.asarray(y, np.float32)
    return np.concatenate([y, *cols], axis=1), names + tuple(c.name for c in combos)


def combine_scores(samples: Samples, combine: Mapping[str, Sequence[str]] | Sequence[str],
                   clip: float = 3.0) -> Samples:
    """`samples` with one continuous column per combined attribute (module doc), statistics
    from these samples; `combine` is {name: sources} or "name=src1,src2" strings. The
    combinations are in `metadata["combine"]` (`combinations_from_metadata`)."""
    if not isinstance(combine, Mapping):
        combine = parse_combine(combine)
    combos = fit_combinations(samples.y, samples.names, samples.binary, combine, clip)
    y, names = apply_combinations(samples.y, samples.names, combos)
    meta = {**samples.metadata,
            "combine": list(samples.metadata.get("combine", [])) + [c.as_dict() for c in combos]}
    return dataclasses.replace(samples, y=y, names=names,
                               binary=tuple(samples.binary) + (False,) * len(combos),
                               metadata=meta)


def combinations_from_metadata(metadata: Mapping[str, Any]) -> tuple[Combination, ...]:
    """The combinations stored under metadata["combine"] (axes or samples), checked."""
    entries = metadata.get("combine") or []
    if not isinstance(entries, list) or len(entries) > 256:
        raise ValueError("axes metadata 'combine': must be a list of at most 256 combinations; "
                         "re-run the fit that wrote it")
    combos = tuple(Combination.from_dict(d) for d in entries)
    if len({c.name for c in combos}) != len(combos):
        raise ValueError("axes metadata 'combine': a combined attribute is defined twice; "
                         "re-run the fit that wrote it")
    return combos


def combined_label(label: Callable[[np.ndarray], np.ndarray], scored: Sequence[str],
                   combos: Sequence[Combination]
                   ) -> tuple[Callable[[np.ndarray], np.ndarray], tuple[str, ...]]:
    """(label', scored'): a labeller [N, d] -> scores that also returns the combined columns
    (own judge of a combined axis), and its column names."""
    scored = tuple(scored)
    if not combos:
        return label, scored
    names = scored + tuple(c.name for c in combos)

    def label2(z):
        return apply_combinations(np.asarray(label(z)), scored, combos)[0]
    return label2, names


def combination_judges(combos: Sequence[Combination], scored: Sequence[str]
                       ) -> dict[str, tuple[str, ...]]:
    """Each combined axis's independent judges: its source nets' own columns."""
    return {c.name: tuple(s for s in c.sources if s in scored) for c in combos
            if any(s in scored for s in c.sources)}


def lock_exceptions(combos: Sequence[Combination]) -> dict[str, tuple[str, ...]]:
    """For edits with the other axes locked: the axes each axis is not locked against. A
    combined axis lies (nearly) in the span of its sources' axes, so neither is locked against
    the other, and combined axes are not locked against each other."""
    names = [c.name for c in combos]
    out: dict[str, set] = {}
    for c in combos:
        out.setdefault(c.name, set()).update(c.sources, (n for n in names if n != c.name))
        for s in c.sources:
            out.setdefault(s, set()).add(c.name)
    return {a: tuple(sorted(b)) for a, b in out.items()}
