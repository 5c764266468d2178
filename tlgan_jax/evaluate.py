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
    y0 = label(z) if y0 is None else y0
    up, down, ent = [], [], []
    for a in names:
        lock = [n for n in axes.names if n != a] if lock_others else []
        n_a = np.asarray(edit_directions(axes, [a], lock))[:, 0]
        y_plus, y_minus = label(z + step * n_a), label(z - step * n_a)
        ia = scored.index(a)
        up.append(np.mean(y_plus[:, ia] > y0[:, ia]))
        down.append(np.mean(y_minus[:, ia] < y0[:, ia]))
        delta = np.mean(y_plus - y_minus, axis=0)
        ent.append(delta / delta[ia] if delta[ia] != 0 else np.full_like(delta, np.nan))
    return EditReport(names, scored, float(step), np.array(up), np.array(down), np.array(ent),
                      bool(lock_others))


def clip_logits(y: np.ndarray, binary: Sequence[bool], bound: float = 3.0) -> np.ndarray:
    """TL-GAN's targets: binary scores (logits) clipped to [-bound, bound]; others as given."""
    y = np.array(y, np.float32, copy=True)
    cols = np.asarray(binary, bool)
    y[:, cols] = np.clip(y[:, cols], -bound, bound)
    return y

