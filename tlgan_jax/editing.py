"""Step 6 of TL-GAN: move latents along attribute axes and render; and judge the edits.

    z' = c(z) + sum_a  t_a * n_a

The same in W or W+ for a style-based generator (its view `gen.in_space("w")`, axes fitted
there); layer-wise: w+'[l] = w + sum_a t_a n_a for the chosen style inputs l only.
c is the generator's latent convention (identity for N(0, I) latents; for pg-GAN, which
pixel-normalises its input, the point on the sphere of radius sqrt(d) that the network
actually sees), n_a are unit axes (after `Axes.disentangle(lock)` when attributes are
locked: the moving axes are then orthogonal to the locked ones, so to first order the locked
attributes' linear scores do not change) and t_a the amounts in latent units.

Judging edits. How good are the axes as editing knobs? Re-score edited faces with the extractors.

For fresh latents z (the generator's convention applied), each attribute a with unit
direction n_a and step λ, with Δy = y(z + λ n_a) − y(z − λ n_a):
  success_up[a]   = mean_i [ y_a(z_i + λ n_a) > y_a(z_i) ]
  success_down[a] = mean_i [ y_a(z_i - λ n_a) < y_a(z_i) ]
  E[a, b]         = (mean_i Δy_b / s_b) / (mean_i Δy_a / s_a)
E is the entanglement matrix: the change of attribute b per unit of intended change of a
(E[a, a] = 1), each score measured in units s (1 by default; the axis-quality benchmark uses
standard deviations). With the lock, n_a is first made orthogonal to every other axis
(TL-GAN's lock), which should shrink the off-diagonal entries.

Independent judges: an axis defined by one net's score is also judged by the same attribute
as another, unrelated net scores it (e.g. `male` by face-api's `fa_male`): success_up/down of
the axis measured on the judge's column. Identity: with face descriptors D among the scored
columns (`FaceDescriptor.as_extractor`), for each edit
  kept_up   = mean_i [ ||D(z_i + λ n_a) − D(z_i)|| < threshold ]    (kept_down likewise)
  distance_per_unit = mean_i (||D(z_i + λ n_a) − D(z_i)|| + ||D(z_i − λ n_a) − D(z_i)||) / (2λ).
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from tlgan_jax.axes import Axes, orthogonal_to_others
from tlgan_jax.extractors import EQUIVALENT_ATTRIBUTES, descriptor_distance
from tlgan_jax.generators import Generator


def edit_directions(axes: Axes, names: Sequence[str], lock: Sequence[str] = ()) -> jax.Array:
    """[d, len(names)] unit directions for `names`, made orthogonal to the `lock`ed axes
    (TL-GAN's lock semantics, see `Axes.disentangle`; axes neither moved nor locked play no
    part)."""
    if lock:
        axes = axes.disentangle(lock=list(lock), target=list(names))
    return jnp.stack([jnp.asarray(axes[n], jnp.float32) for n in names], axis=1)


def edit_latents(gen: Generator, z, axes: Axes, amounts: Mapping[str, float],
                 lock: Sequence[str] = (), *, layers: Sequence[int] | None = None) -> jax.Array:
    """z' = c(z) + sum_a t_a n_a for amounts {attribute: t_a}; z: [N, d].

    gen and z are in the axes' latent space (`gen.in_space(axes.latent_space)`, latents from
    `gen.encode(z, space)`); other spaces are refused. layers (w and w+ axes of a style-based
    generator): apply the edit only to those style inputs (e.g. range(0, 4): coarse); the
    result is then w+ latents [N, num_ws·w_dim], to render with `gen.in_space("w+")`."""
    axes.check_generator(gen)
    z = gen.check_latents(z)
    names = list(amounts)
    unknown = [n for n in names if n not in axes.names]
    if unknown:
        raise ValueError(f"unknown attribute(s) {unknown}; the axes have {list(axes.names)}")
    t = np.array([amounts[n] for n in names], np.float32)
    if not np.all(np.isfinite(t)):
        raise ValueError(f"edit amounts must be finite, got {dict(amounts)}")
    if lock and set(lock) & set(names):
        raise ValueError(f"cannot both move and lock {sorted(set(lock) & set(names))}")
    delta = jnp.asarray(t) @ edit_directions(axes, names, lock).T        # Σ t_a n_a
    if layers is not None:
        return to_wplus(gen, z) + layer_direction(gen, delta, layers)
    return gen.canonical_latents(z) + delta


def to_wplus(gen: Generator, latents) -> jax.Array:
    """w or w+ latents of a style-based generator's view -> w+ [N, num_ws·w_dim]."""
    if gen.latent_space not in ("w", "w+"):
        raise ValueError(f"{gen.name}: layer-wise edits need W or W+ latents (gen.in_space('w')"
                         f" of a style-based generator), not {gen.latent_space}")
    latents = gen.check_latents(latents)
    if gen.latent_space == "w+":
        return latents
    ws = gen.require_w_space()
    return ws.broadcast_flat(latents)


def layer_direction(gen: Generator, direction, layers: Sequence[int]) -> jax.Array:
    """A w or w+ direction (or a batch of them, [..., d]) of `gen`'s view restricted to the
    style inputs `layers`, as a w+ direction [..., num_ws·w_dim]: a w direction is used for
    each of those inputs (GANSpace's layer-wise edit), a w+ direction keeps its rows there;
    every other input is left unchanged."""
    return masked_layer_direction(gen, direction, layer_mask(gen, layers))


def layer_mask(gen: Generator, layers: Sequence[int]) -> np.ndarray:
    """[num_ws] float32, 1 at the style inputs `layers` of `gen`'s W / W+ view, else 0."""
    if gen.latent_space not in ("w", "w+"):
        raise ValueError(f"{gen.name}: layer-wise edits need W or W+ axes and latents "
                         f"(gen.in_space('w') of a style-based generator), not "
                         f"{gen.latent_space}")
    ws = gen.require_w_space()
    layers = sorted({int(i) for i in layers})
    if not layers or layers[0] < 0 or layers[-1] >= ws.num_ws:
        raise ValueError(f"{gen.name}: layers must be a non-empty subset of 0..{ws.num_ws - 1} "
                         f"(the style inputs), got {list(layers)}")
    mask = np.zeros(ws.num_ws, np.float32)
    mask[layers] = 1.0
    return mask


def masked_layer_direction(gen: Generator, direction, mask) -> jax.Array:
    """`layer_direction` with the style inputs as a mask m [..., num_ws] (broadcast against
    the directions [..., d]; jittable, so the editor runs every layer choice with one
    compiled function): w+ rows  m_l · n  (w direction n) or  m_l · n[l]  (w+ direction)."""
    ws = gen.require_w_space()
    d = jnp.asarray(direction, jnp.float32)
    m = jnp.asarray(mask, jnp.float32)[..., :, None]
    if gen.latent_space == "w":
        rows = d[..., None, :] * m
    else:
        rows = d.reshape(*d.shape[:-1], ws.num_ws, ws.w_dim) * m
    return rows.reshape(*rows.shape[:-2], ws.num_ws * ws.w_dim)


# GANSpace's layer ranges for StyleGAN's 18 style inputs (1024²), by name for `parse_layers`.
LAYER_PRESETS = {"coarse": "0:4", "middle": "4:8", "fine": "8:"}


def parse_layers(text: str | None, num_ws: int | None = None) -> list[int] | None:
    """'START:STOP' (either end may be empty, Python slice semantics) or a `LAYER_PRESETS`
    name (coarse 0:4, middle 4:8, fine 8:) -> the style-input indices range(num_ws)[START:STOP];
    None for None. ValueError for another form or, with `num_ws`, a selection of no input.
    Without `num_ws` only the form is checked (returns [])."""
    if text is None:
        return None
    parts = LAYER_PRESETS.get(text.strip(), text).split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        start = int(parts[0]) if parts[0] else None
        stop = int(parts[1]) if parts[1] else None
    except ValueError:
        raise ValueError(f"must be START:STOP (e.g. 0:4) or one of "
                         f"{', '.join(f'{k} ({v})' for k, v in LAYER_PRESETS.items())}, got "
                         f"{text!r}") from None
    if num_ws is None:
        return []
    layers = list(range(num_ws))[start:stop]
    if not layers:
        raise ValueError(f"{text} selects no style input (there are {num_ws})")
    return layers


def layer_presets(num_ws: int) -> dict[str, list[int]]:
    """The `LAYER_PRESETS` that select at least one of `num_ws` style inputs, as indices."""
    presets: dict[str, list[int]] = {}
    for name in LAYER_PRESETS:
        try:
            presets[name] = parse_layers(name, num_ws) or []
        except ValueError:            # e.g. "fine" (8:) of a generator with 8 style inputs
            pass
    return presets


def traversal_latents(gen: Generator, z, direction, steps: Sequence[float]) -> jax.Array:
    """[F, S, d]: each of F faces moved by each step t along the unit `direction` [d]."""
    z = gen.canonical_latents(gen.check_latents(z))
    d = jnp.asarray(direction, jnp.float32)
    return z[:, None, :] + jnp.asarray(steps, jnp.float32)[None, :, None] * d[None, None, :]


def render_traversal(gen: Generator, z, direction, steps: Sequence[float],
                     batch_size: int = 64, *, layers: Sequence[int] | None = None) -> np.ndarray:
    """Images [F, S, R, R, 3] of `traversal_latents` (rendered in batches). layers: a w / w+
    direction applied only to those style inputs (`layer_direction`), rendered in W+."""
    if layers is not None:
        z, direction = to_wplus(gen, z), layer_direction(gen, direction, layers)
        gen = gen.in_space("w+")
    zz = traversal_latents(gen, z, direction, steps)
    f, s, d = zz.shape
    flat = zz.reshape(f * s, d)
    imgs = np.concatenate([np.asarray(gen(flat[i:i + batch_size]))
                           for i in range(0, f * s, batch_size)])
    return imgs.reshape(f, s, *imgs.shape[1:])


# ----------------------------------------------------------------------------- judging edits

Label = Callable[[np.ndarray], np.ndarray]


@dataclasses.dataclass(frozen=True)
class EditReport:
    names: tuple[str, ...]            # attributes edited (rows of `entanglement`)
    scored: tuple[str, ...]           # attributes re-scored (columns)
    step: float
    success_up: np.ndarray            # [len(names)]
    success_down: np.ndarray          # [len(names)]
    entanglement: np.ndarray          # [len(names), len(scored)]
    locked: bool
    # axis -> {judge attribute: (success_up, success_down)} on the judge's score
    judged: dict = dataclasses.field(default_factory=dict)
    identity_kept_up: np.ndarray | None = None      # [len(names)] (module doc)
    identity_kept_down: np.ndarray | None = None
    identity_distance: np.ndarray | None = None     # [len(names)] distance per unit of edit
    identity_threshold: float | None = None

    def as_dict(self) -> dict:
        d = {"step": self.step, "locked": self.locked,
             "success_up": dict(zip(self.names, map(float, self.success_up))),
             "success_down": dict(zip(self.names, map(float, self.success_down))),
             "entanglement": {a: dict(zip(self.scored, map(float, row)))
                              for a, row in zip(self.names, self.entanglement)},
             "judges": {a: {b: {"success_up": float(u), "success_down": float(v)}
                            for b, (u, v) in j.items()} for a, j in self.judged.items()}}
        if (self.identity_distance is not None and self.identity_kept_up is not None
                and self.identity_kept_down is not None):
            d["identity"] = {
                "threshold": self.identity_threshold,
                "kept_up": dict(zip(self.names, map(float, self.identity_kept_up))),
                "kept_down": dict(zip(self.names, map(float, self.identity_kept_down))),
                "distance_per_unit": dict(zip(self.names, map(float, self.identity_distance)))}
        return d


def scores_after_edits(label: Label, z: np.ndarray, directions: np.ndarray,
                       step: float) -> tuple[np.ndarray, np.ndarray]:
    """(y(z + λ n_j), y(z − λ n_j)), each [k, N, m], for directions [k, d]: every edit of
    every face in one labelling call ([2k·N, d])."""
    z = np.asarray(z, np.float32)
    dirs = np.asarray(directions, np.float32)
    signs = np.array([1.0, -1.0], np.float32)[:, None, None, None]
    moved = z[None, None] + np.float32(step) * signs * dirs[None, :, None, :]   # [2, k, N, d]
    y = np.asarray(label(moved.reshape(-1, z.shape[1]))).reshape(2, dirs.shape[0], z.shape[0], -1)
    return y[0], y[1]


def edit_effects(y0: np.ndarray, y_plus: np.ndarray, y_minus: np.ndarray, cols: Sequence[int],
                 scale: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(success_up [k], success_down [k], E [k, m]) (module doc) from the unedited scores
    y0 [N, m] and the scores after edits y_plus/y_minus [k, N, m]; edit j targets column
    cols[j]; `scale` [m] the units s (default 1)."""
    y0 = np.asarray(y0)
    c = np.asarray(cols, int)
    rows = np.arange(len(c))
    up = np.mean(y_plus[rows, :, c] > y0[:, c].T, axis=1)
    down = np.mean(y_minus[rows, :, c] < y0[:, c].T, axis=1)
    delta = np.mean(np.asarray(y_plus, np.float64) - y_minus, axis=1)          # [k, m]
    if scale is not None:
        delta = delta / np.asarray(scale, np.float64)[None, :]
    own = delta[rows, c][:, None]
    ent = np.divide(delta, own, out=np.full_like(delta, np.nan), where=own != 0)
    return up, down, ent


def judged_effects(y0: np.ndarray, y_plus: np.ndarray, y_minus: np.ndarray,
                   judges: Mapping[int, Sequence[int]]
                   ) -> dict[int, dict[int, tuple[float, float]]]:
    """{edit j: {column b: (success_up, success_down)}}: edit j (a row of y_plus / y_minus
    [k, N, m]) judged on the score column b of another net (module doc)."""
    out: dict[int, dict[int, tuple[float, float]]] = {}
    for j, cols in judges.items():
        for b in cols:
            up, down, _ = edit_effects(y0, y_plus[j:j + 1], y_minus[j:j + 1], [b])
            out.setdefault(j, {})[b] = (float(up[0]), float(down[0]))
    return out


def identity_effects(y0: np.ndarray, y_plus: np.ndarray, y_minus: np.ndarray,
                     dcols: Sequence[int], threshold: float, step: float
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(kept_up [k], kept_down [k], distance_per_unit [k]) from the descriptor columns
    `dcols` of the unedited scores y0 [N, m] and the edited y_plus / y_minus [k, N, m]."""
    dcols = list(dcols)
    d0 = np.asarray(y0)[None, :, dcols]
    dist_up = np.asarray(descriptor_distance(y_plus[..., dcols], d0))       # [k, N]
    dist_down = np.asarray(descriptor_distance(y_minus[..., dcols], d0))
    return (np.mean(dist_up < threshold, axis=1), np.mean(dist_down < threshold, axis=1),
            np.mean(dist_up + dist_down, axis=1) / (2 * float(step)))


def judges_for(names: Sequence[str], scored: Sequence[str],
               groups: Sequence[Sequence[str]] | None = None) -> dict[str, tuple[str, ...]]:
    """For each axis in `names`: the other attributes of its group (same concept scored by
    another net) that are among `scored`. groups: e.g. (("male", "fa_male"), ("age", "fa_age"));
    default `extractors.EQUIVALENT_ATTRIBUTES` (the embedded families)."""
    groups = EQUIVALENT_ATTRIBUTES if groups is None else groups
    out = {}
    for a in names:
        for g in groups:
            if a in g:
                judges = tuple(b for b in g if b != a and b in scored)
                if judges:
                    out[a] = judges
    return out


def edit_report(label: Label, scored: Sequence[str], z: np.ndarray, axes: Axes,
                names: Sequence[str] | None = None, step: float = 3.0,
                lock_others: bool = False, y0: np.ndarray | None = None,
                judges: Mapping[str, Sequence[str]] | None = None,
                descriptor: tuple[Sequence[str], float] | None = None,
                lock_except: Mapping[str, Sequence[str]] | None = None) -> EditReport:
    """Edit success and entanglement of `axes`, per independent judge, and identity (see
    module doc).

    label: canonical latents [N, d] -> scores [N, len(scored)] (e.g. `Sampler.label`);
    z: canonical latents of the faces to edit;
    judges: axis -> attributes (columns of `scored`) that also judge it (`judges_for`);
    descriptor: (the descriptor's columns in `scored`, same-person threshold); those columns
    are used for identity only, not reported as attributes;
    lock_except: with lock_others, axis -> axes it is NOT locked against (e.g. a combined
    attribute and its sources, `combine.lock_exceptions`: locking either against the other
    would remove the edit itself).
    """
    names = tuple(names or axes.names)
    scored = tuple(scored)
    z = np.asarray(z, np.float32)
    y0 = label(z) if y0 is None else y0
    if lock_others:
        dirs = orthogonal_to_others(axes, names, exceptions=lock_except)
    else:
        dirs = np.asarray(edit_directions(axes, names))
    y_plus, y_minus = scores_after_edits(label, z, dirs.T, step)
    dcols = [scored.index(c) for c in descriptor[0]] if descriptor else []
    acols = [i for i in range(len(scored)) if i not in set(dcols)]
    attrs = tuple(scored[i] for i in acols)
    y0a, ypa, yma = np.asarray(y0)[:, acols], y_plus[..., acols], y_minus[..., acols]
    up, down, ent = edit_effects(y0a, ypa, yma, [attrs.index(a) for a in names])
    by_row = judged_effects(y0a, ypa, yma, {j: [attrs.index(b) for b in (judges or {})[a]]
                                            for j, a in enumerate(names) if (judges or {}).get(a)})
    judged = {names[j]: {attrs[b]: v for b, v in row.items()} for j, row in by_row.items()}
    report = EditReport(names, attrs, float(step), up, down, ent, bool(lock_others), judged)
    if not descriptor:
        return report
    thr = float(descriptor[1])
    kept_up, kept_down, per_unit = identity_effects(y0, y_plus, y_minus, dcols, thr, step)
    return dataclasses.replace(report, identity_kept_up=kept_up, identity_kept_down=kept_down,
                               identity_distance=per_unit, identity_threshold=thr)
