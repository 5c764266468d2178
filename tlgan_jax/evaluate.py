"""How good are the axes as editing knobs? Re-score edited faces with the extractors.

For fresh latents z (the generator's convention applied), each attribute a and step λ:
  success_up[a]   = mean_i [ y_a(z_i + λ n_a) > y_a(z_i) ]
  success_down[a] = mean_i [ y_a(z_i - λ n_a) < y_a(z_i) ]
  E[a, b]         = mean_i (y_b(z_i + λ n_a) - y_b(z_i - λ n_a))
                    / mean_i (y_a(z_i + λ n_a) - y_a(z_i - λ n_a))
E is the entanglement matrix: the change of attribute b per unit of intended change of a
(E[a, a] = 1). With `lock_others`, n_a is first made orthogonal to every other axis
(TL-GAN's lock), which should shrink the off-diagonal entries.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np

from tlgan_jax.axes import Axes
from tlgan_jax.editing import edit_directions


@dataclasses.dataclass(frozen=True)
class EditReport:
    names: tuple[str, ...]            # attributes edited (rows of `entanglement`)
    scored: tuple[str, ...]           # attributes re-scored (columns)
    step: float
    success_up: np.ndarray            # [len(names)]
    success_down: np.ndarray          # [len(names)]
    entanglement: np.ndarray          # [len(names), len(scored)]
    locked: bool

    def as_dict(self) -> dict:
        return {"step": self.step, "locked": self.locked,
                "success_up": dict(zip(self.names, map(float, self.success_up))),
                "success_down": dict(zip(self.names, map(float, self.success_down))),
                "entanglement": {a: dict(zip(self.scored, map(float, row)))
                                 for a, row in zip(self.names, self.entanglement)}}


def edit_report(label: Callable[[np.ndarray], np.ndarray], scored: Sequence[str], z: np.ndarray,
                axes: Axes, names: Sequence[str] | None = None, step: float = 3.0,
                lock_others: bool = False, y0: np.ndarray | None = None) -> EditReport:
    """Edit success and entanglement of `axes` (see module doc).

    label: canonical latents [N, d] -> scores [N, len(scored)] (e.g. `Sampler.label`);
    z: canonical latents of the faces to edit.
    """
    names = tuple(names or axes.names)
    scored = tuple(scored)
    z = np.asarray(z, np.float32)
    n = z.shape[0]
    y0 = label(z) if y0 is None else y0
    dirs = np.stack([np.asarray(edit_directions(
        axes, [a], [b for b in axes.names if b != a] if lock_others else []))[:, 0]
        for a in names])                                           # [k, d]
    # every edit of every face in one labelling call: [2, k, N, d] -> [2k N, d]
    moved = z[None, None] + step * np.array([1.0, -1.0], np.float32)[:, None, None, None] \
        * dirs[None, :, None, :]
    y = label(moved.reshape(-1, z.shape[1])).reshape(2, len(names), n, -1)
    cols = np.array([scored.index(a) for a in names])
    rows = np.arange(len(names))
    y_plus, y_minus = y[0], y[1]                                   # [k, N, m]
    up = np.mean(y_plus[rows, :, cols] > y0[:, cols].T, axis=1)
    down = np.mean(y_minus[rows, :, cols] < y0[:, cols].T, axis=1)
    delta = np.mean(y_plus - y_minus, axis=1)                      # [k, m]
    own = delta[rows, cols][:, None]
    ent = np.divide(delta, own, out=np.full_like(delta, np.nan), where=own != 0)
    return EditReport(names, scored, float(step), up, down, ent,
                      bool(lock_others))


def clip_logits(y: np.ndarray, binary: Sequence[bool], bound: float = 3.0) -> np.ndarray:
    """TL-GAN's targets: binary scores (logits) clipped to [-bound, bound]; others as given."""
    y = np.array(y, np.float32, copy=True)
    cols = np.asarray(binary, bool)
    y[:, cols] = np.clip(y[:, cols], -bound, bound)
    return y

