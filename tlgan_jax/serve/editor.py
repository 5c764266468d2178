"""The editor's engine: render / score / edit / invert for one generator, its extractors and
axes, with every per-request function jitted once at start-up (batch 1, fixed shapes).

A request carries the full state (z, amounts t per attribute, locked attributes L, and for
W / W+ axes optionally the style inputs each attribute moves):
    D = directions of Axes.disentangle(lock=L in the axes' order)   (TL-GAN's lock)
    z' = c(z) + D t,   image = G_θ(z'),   scores = F(image)
D is computed inside the jitted function from a lock mask m ∈ {0,1}^k
(`tlgan_jax.axes.locked_directions`), so every lock combination runs the same compiled code.
Layer-wise (GANSpace; W / W+ axes of a style-based generator): with a style-input mask
M ∈ {0,1}^{k×L} (row a: the inputs attribute a moves; all ones by default) the image is
rendered from the w+ latent  w+'[l] = c(w)[l] + Σ_a t_a M[a, l] D_a[l]  (`editing.
masked_layer_direction`); with M all ones this is G(z') exactly. M is an argument too, so
every layer choice also runs the same compiled code.
θ is the generator's parameters, or a photo's refined ones (see tlgan_jax.invert) when the
state names an uploaded photo. Locked attributes keep the amount they had (their sliders are
frozen in the page); the others move orthogonally to the locked axes, so to first order the
locked attributes' linear scores do not change.
Independent judges (`judges`): extractors that did not define the axes, scored on the same
image; each attribute lists the scores of the same concept by another net
(`extractors.EQUIVALENT_ATTRIBUTES`, as `discover_axes` judges its edits), so the page shows
the own net's reading of an edit beside an unrelated one's.
Combined axes (`discover_axes --combine`, e.g. age_mix = mean of standardised age and
fa_age): scored from their sources' scores (`combine.Combination.score`, the statistics stored
with the axes) and judged by the sources, as in `discover_axes`.
Identity (with a face `descriptor`): the same jitted render returns the descriptor of the
edited face and its distance to the unedited face's descriptor D0 = D(G_θ(c(z))),
    δ = ||D(G_θ(z')) − D0||,   identity kept ⇔ δ < the descriptor's threshold;
D0 comes from the same function with no edit (t = 0), once per (z, photo) (a small cache), so
a slider drag draws one face per move.
"""
from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import functools
import io
import math
import queue
import secrets
import threading
import time
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from tlgan_jax.axes import Axes, locked_directions
from tlgan_jax.combine import apply_combinations, combination_judges, combinations_from_metadata
from tlgan_jax.editing import (
    judges_for,
    layer_presets,
    masked_layer_direction,
    parse_layers,
    to_wplus,
)
from tlgan_jax.extractors import (
    Extractor,
    FaceDescriptor,
    descriptor_distance,
    stack_scores,
)
from tlgan_jax.generators import Generator, to_uint8
from tlgan_jax.invert import InversionConfig, Inverter, PhotoError, frame_face, load_photo
from tlgan_jax.invert.photos import check_photo_header


class EditorError(ValueError):
    """A request the editor cannot serve; `status` is the HTTP status to answer with and
    `headers` extra response headers (e.g. Retry-After with a 503)."""

    def __init__(self, message: str, status: int = 400, headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.headers = dict(headers or {})


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one request may ask for (bigger requests get a 4xx, never an out-of-memory)."""
    max_amount: float = 10.0           # |t_a| in latent units
    max_latent: float = 50.0           # |z_i| (N(0, 1) draws stay below ~6)
    max_json_bytes: int = 256 * 1024
    max_upload_bytes: int = 10 * 1024 * 1024
    max_photo_pixels: int = 40_000_000
    stored_photos: int = 8             # refined generators kept (LRU), ~15 MB each for DigiFace
    invert_queue: int = 2              # uploads waiting behind the running inversion (as
                                       # bytes, <= max_upload_bytes each); more get 503 at once


def _photo_error(e: PhotoError) -> EditorError:
    return EditorError(str(e), {"too_large": 413, "not_image": 415}.get(e.reason, 400))


def png_bytes(image_u8: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.asarray(image_u8, np.uint8)).save(buf, "PNG", compress_level=1)
    return buf.getvalue()


class Editor:
    """Everything the web app computes. Thread-safe; `warmup()` compiles every function."""

    def __init__(self, gen: Generator, extractors: Sequence[Extractor], axes: Axes, *,
                 invert_config: InversionConfig = InversionConfig(steps=150, restarts=2,
                                                                   refine_steps=100),
                 limits: Limits = Limits(), descriptor: FaceDescriptor | None = None,
                 judges: Sequence[Extractor] = ()):
        axes.check_generator(gen)
        self.gen, self.axes, self.limits = gen, axes, limits
        self.descriptor = descriptor
        self.extractors = tuple(extractors)
        self.judges = tuple(judges)
        scorers = self.extractors + self.judges
        self.attributes = tuple(axes.names)
        # style inputs of W / W+ axes (layer-wise edits render in W+); None for z axes
        self.num_ws = (gen.require_w_space().num_ws if gen.latent_space in ("w", "w+")
                       else None)
        self._render_gen = gen.in_space("w+") if self.num_ws else gen
        self._layer_info = (None if self.num_ws is None else
                            {"num_ws": self.num_ws, "presets": layer_presets(self.num_ws)})
        self._net_scores = tuple(a for e in scorers for a in e.attributes)
        if len(set(self._net_scores)) != len(self._net_scores):
            raise ValueError(f"extractor attributes must be unique, got {self._net_scores}")
        # combined axes whose sources are all scored get a score of their own
        self.combos = tuple(c for c in combinations_from_metadata(axes.metadata)
                            if set(c.sources) <= set(self._net_scores))
        self.score_names = self._net_scores + tuple(c.name for c in self.combos)
        self.binary = {a: b for e in scorers for a, b in zip(e.attributes, e.binary)}
        self.score_meaning = {a: f"{e.name}: {e.info.get('score', 'score')}"
                              for e in scorers for a in e.attributes}
        self.score_meaning.update({c.name: f"mean of the standardised {', '.join(c.sources)}"
                                   for c in self.combos})
        # {attribute: the same concept scored by other nets} (independent judges)
        self.judged = {**judges_for(self.attributes, self.score_names),
                       **combination_judges(self.combos, self.score_names)}
        self._d0: collections.OrderedDict[tuple, np.ndarray] = collections.OrderedDict()
        self._d0_lock = threading.Lock()
        self._scorers = scorers
        self._ext_params = [e.params for e in scorers]
        self.inverter = Inverter(gen, self.extractors, invert_config)
        self._photos: collections.OrderedDict[str, Any] = collections.OrderedDict()
        self._photos_lock = threading.Lock()
        self._invert_lock = threading.Lock()            # the inverter: one job at a time
        self._progress = {"busy": False, "stage": "", "done": 0, "total": 0}
        # uploads: a bounded queue served by one worker thread of its own (never the web
        # server's shared thread pool, so renders never wait behind uploads)
        if int(limits.invert_queue) < 0:
            raise ValueError(f"Limits.invert_queue must be >= 0, got {limits.invert_queue}")
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._capacity = 1 + int(limits.invert_queue)    # the running upload + those waiting
        self._pending = 0                                # uploads submitted and not finished
        self._admitted = 0                               # upload requests being served (HTTP)
        self._worker: threading.Thread | None = None
        self._jobs_lock = threading.Lock()
        self._last_invert_s = 0.0
        self.render_ms: collections.deque[float] = collections.deque(maxlen=2000)

    # -- jitted functions (batch 1) -----------------------------------------------------------
    def _edit_fn(self, directions, z, mask, t, layer_masks):
        """(z' in the axes' space, the latent rendered, lock ok): the latent rendered is z'
        itself for z axes, the w+ latent with attribute a moved on the style inputs
        layer_masks[a] for W / W+ axes (module doc)."""
        dirs, ok = locked_directions(directions, mask)
        ok = jnp.all(ok)
        z0 = self.gen.canonical_latents(z)
        z2 = z0 + jnp.dot(t[None, :], dirs.T, precision=jax.lax.Precision.HIGHEST)
        if self.num_ws is None:
            return z2, z2, ok
        moves = masked_layer_direction(self.gen, dirs.T, layer_masks)   # [k, L·w_dim]
        return z2, to_wplus(self.gen, z0) + jnp.dot(
            t[None, :], moves, precision=jax.lax.Precision.HIGHEST), ok

    def _render_fn(self, gen_params, ext_params, desc_params, directions, z, mask, t,
                   layer_masks, d0):
        """(uint8 image, scores, z', rendered latent, lock ok, descriptor D of the image
        [1, dim] and δ = ||D − d0|| (without a descriptor: [1, 0] and NaN))."""
        z2, latent, ok = self._edit_fn(directions, z, mask, t, layer_masks)
        images = self._render_gen.apply(gen_params, latent)
        if self.descriptor is None:
            d = jnp.zeros((1, 0), jnp.float32)
            distance = jnp.full((1,), jnp.nan, jnp.float32)
        else:
            d = self.descriptor.descriptor_array(desc_params, images)
            distance = descriptor_distance(d, d0)
        scores = (stack_scores(self._scorers, ext_params, images) if self._scorers
                  else jnp.zeros((1, 0), jnp.float32))
        return to_uint8(images), scores, z2, latent, ok, d, distance

    @functools.cached_property
    def _render(self):
        return jax.jit(self._render_fn)

    @functools.cached_property
    def _edit(self):
        return jax.jit(self._edit_fn)

    def warmup(self, render: bool = True, invert: bool = True) -> dict:
        """Compile render/edit and/or the inversion steps now; returns seconds per part."""
        times = {}
        if render:
            t = time.perf_counter()
            z = np.zeros(self.gen.latent_dim, np.float32)
            self.render(z, {}, [])
            self.render(z, {}, [])
            self.edit(z, {}, [])
            self.render_ms.clear()                # the statistics are of warm renders
            times["render_s"] = time.perf_counter() - t
        if invert:
            t = time.perf_counter()
            with self._invert_lock:            # an upload meanwhile waits for the compile
                self.inverter.warmup(1)
            times["invert_s"] = time.perf_counter() - t
        return times

    # -- state -> arrays ----------------------------------------------------------------------
    def _state(self, z, amounts, lock, layers=None):
        z = np.asarray(z, np.float32)
        if z.shape != (self.gen.latent_dim,):
            raise EditorError(f"z must have {self.gen.latent_dim} numbers, got shape {z.shape}")
        if not np.all(np.isfinite(z)) or np.max(np.abs(z)) > self.limits.max_latent:
            raise EditorError(f"z must be finite with |z_i| <= {self.limits.max_latent}")
        unknown = sorted(set(amounts) - set(self.attributes))
        unknown_lock = sorted(set(lock) - set(self.attributes))
        if unknown or unknown_lock:
            raise EditorError(f"unknown attribute(s) {unknown + unknown_lock}; the axes have "
                              f"{list(self.attributes)}", 422)
        t = np.array([amounts.get(a, 0.0) for a in self.attributes], np.float32)
        if not np.all(np.isfinite(t)) or np.max(np.abs(t), initial=0) > self.limits.max_amount:
            raise EditorError(f"amounts must be finite numbers in [-{self.limits.max_amount}, "
                              f"{self.limits.max_amount}]", 422)
        mask = np.array([a in set(lock) for a in self.attributes])   # TL-GAN: index order
        return z[None], mask, t, self._layer_masks(layers or {})

    def _layer_masks(self, layers: dict) -> np.ndarray:
        """{attribute: "START:STOP" or a preset name} -> M [k, num_ws] (all ones where not
        given; [k, 1] ones for z axes, which have no style inputs)."""
        unknown = sorted(set(layers) - set(self.attributes))
        if unknown:
            raise EditorError(f"layers: unknown attribute(s) {unknown}; the axes have "
                              f"{list(self.attributes)}")
        if self.num_ws is None:
            if layers:
                raise EditorError(f"layers: layer-wise edits need W or W+ axes of a "
                                  f"style-based generator; these axes are in "
                                  f"{self.gen.latent_space}")
            return np.ones((len(self.attributes), 1), np.float32)
        masks = np.ones((len(self.attributes), self.num_ws), np.float32)
        for a, text in layers.items():
            try:
                chosen = parse_layers(str(text), self.num_ws)
            except ValueError as e:
                raise EditorError(f"layers[{a}]: {e}") from None
            row = masks[self.attributes.index(a)]
            row[:] = 0.0
            row[chosen] = 1.0
        return masks

    def layer_info(self) -> dict | None:
        """{num_ws, presets: {name: [indices]}} of W / W+ axes (layer-wise edits); None for z."""
        return self._layer_info

    def _check_lock(self, ok, mask):
        if not bool(ok):
            locked = [a for a, m in zip(self.attributes, mask) if m]
            raise EditorError(f"cannot lock {locked}: an axis lies in the span of the locked "
                              f"ones, so nothing is left of it")

    def _params(self, photo: str | None):
        if photo is None:
            return self.gen.params
        with self._photos_lock:
            if photo not in self._photos:
                raise EditorError(f"unknown or expired photo {photo!r}: upload the photo "
                                  f"again", 404)
            self._photos.move_to_end(photo)
            return self._photos[photo]

    # -- requests -----------------------------------------------------------------------------
    def _run(self, z, amounts: dict, lock: Sequence[str], photo: str | None, layers=None):
        """(uint8 image [R, R, 3], scores [m], edited latent, its space, identity distance δ)
        of a state; the edited latent is z' in the axes' space, or w+ when `layers` names
        style inputs."""
        zz, mask, t, masks = self._state(z, amounts, lock, layers)
        params = self._params(photo)
        d0, key = None, (zz.tobytes(), photo)
        if self.descriptor is not None:
            with self._d0_lock:
                d0 = self._d0.get(key)
            if d0 is None and np.any(t):               # the unedited face's descriptor first
                d0 = self._render_d(params, zz, np.zeros_like(mask), np.zeros_like(t),
                                    np.ones_like(masks), None)[5]
        img, scores, z2, latent, ok, d, dist = self._render_d(params, zz, mask, t, masks, d0)
        self._check_lock(ok, mask)
        distance = float(np.asarray(dist)[0])
        if self.descriptor is not None and not np.any(t):   # this face is the unedited one
            d0, distance = np.asarray(d), 0.0
        if d0 is not None:
            with self._d0_lock:
                self._d0[key] = d0
                self._d0.move_to_end(key)
                while len(self._d0) > 256:
                    self._d0.popitem(last=False)
        scores = apply_combinations(np.asarray(scores), self._net_scores, self.combos)[0]
        edited, space = (latent, "w+") if layers else (z2, self.gen.latent_space)
        return np.asarray(img)[0], scores[0], np.asarray(edited)[0], space, distance

    def _render_d(self, params, zz, mask, t, masks, d0):
        """The jitted render of one state against the unedited descriptor d0 (zeros: none)."""
        desc_params = self.descriptor.params if self.descriptor is not None else None
        if d0 is None:
            d0 = np.zeros((1, self.descriptor.dim if self.descriptor is not None else 0),
                          np.float32)
        return self._render(params, self._ext_params, desc_params, self.axes.directions, zz,
                            mask, t, masks, d0)

    def _identity(self, distance: float) -> dict | None:
        """{descriptor, distance, threshold, kept} of the current edit, or None."""
        if self.descriptor is None:
            return None
        thr = float(self.descriptor.threshold)
        return {"descriptor": self.descriptor.name, "distance": distance, "threshold": thr,
                "kept": bool(distance < thr)}

    def render(self, z, amounts: dict, lock: Sequence[str], photo: str | None = None,
               layers: dict | None = None) -> dict:
        """{png: bytes, scores: {attr: float}, z_edited: list, z_edited_space, identity:
        `_identity` (None without a descriptor), ms: server time}; the time goes into the
        latency statistics. layers: {attribute: "START:STOP" or preset} (W / W+ axes)."""
        t0 = time.perf_counter()
        img, scores, z2, space, dist = self._run(z, amounts, lock, photo, layers)
        png = png_bytes(img)
        ms = (time.perf_counter() - t0) * 1e3
        self.render_ms.append(ms)
        return {"png": png, "scores": dict(zip(self.score_names, map(float, scores))),
                "z_edited": z2.tolist(), "z_edited_space": space,
                "identity": self._identity(dist), "ms": ms}

    def edit(self, z, amounts: dict, lock: Sequence[str],
             layers: dict | None = None) -> tuple[list[float], str]:
        """(the edited latent, its space) of a state, without rendering (as `render`)."""
        zz, mask, t, masks = self._state(z, amounts, lock, layers)
        z2, latent, ok = self._edit(self.axes.directions, zz, mask, t, masks)
        self._check_lock(ok, mask)
        if layers:
            return np.asarray(latent)[0].tolist(), "w+"
        return np.asarray(z2)[0].tolist(), self.gen.latent_space

    def score(self, z, photo: str | None = None) -> dict:
        scores = self._run(z, {}, [], photo)[1]
        return dict(zip(self.score_names, map(float, scores)))

    def random_latent(self, seed: int | None = None) -> tuple[list[float], int]:
        """A face from the generator's prior: the same z as `gen.sample_latents(key(seed), 1)`
        (so `?seed=N` shows what `traverse.py --seed=N` and the library draw first)."""
        seed = secrets.randbelow(2**31) if seed is None else int(seed)
        z = np.asarray(self.gen.sample_latents(jax.random.key(seed), 1))[0]
        return z.tolist(), seed

    def progress(self) -> dict:
        """The running inversion: {busy, stage ("z" or "refine"), done, total} steps."""
        return dict(self._progress)

    def latency(self) -> dict:
        ms = np.asarray(self.render_ms, np.float64)
        if not ms.size:
            return {"renders": 0}
        return {"renders": int(ms.size), "p50_ms": float(np.percentile(ms, 50)),
                "p95_ms": float(np.percentile(ms, 95)), "max_ms": float(ms.max())}

    # -- uploads ------------------------------------------------------------------------------
    def _check_upload(self, data: bytes) -> None:
        """Size and image header of an upload (cheap: nothing is decoded)."""
        if len(data) > self.limits.max_upload_bytes:
            raise EditorError(f"the upload is {len(data)} bytes; the limit is "
                              f"{self.limits.max_upload_bytes}", 413)
        try:
            check_photo_header(data, max_pixels=self.limits.max_photo_pixels)
        except PhotoError as e:
            raise _photo_error(e) from None

    def admit_upload(self) -> bool:
        """Reserve one of the queue's places for an upload request before its body is read
        (the web app's guard); False when all are taken. Pair with `release_upload()`. This
        bounds the upload bodies held in memory at once to the queue's capacity."""
        with self._jobs_lock:
            if self._admitted >= self._capacity:
                return False
            self._admitted += 1
            return True

    def release_upload(self) -> None:
        with self._jobs_lock:
            self._admitted -= 1

    def busy_error(self) -> EditorError:
        """The 503 for an upload while the queue is full (Retry-After: the expected wait)."""
        busy = max(self._pending, self._admitted, 1)
        retry = max(1, math.ceil((self._last_invert_s or 10.0) * busy))
        return EditorError(f"the editor is busy inverting photos ({busy} running or waiting, "
                           f"at most {self._capacity}); try again in about {retry} s", 503,
                           {"Retry-After": str(retry)})

    def _job_done(self, _future) -> None:
        with self._jobs_lock:
            self._pending -= 1

    def submit_invert(self, data: bytes, **kwargs) -> concurrent.futures.Future:
        """Queue an upload for inversion on the editor's own worker thread; returns a Future
        of `invert(data, **kwargs)`. Raises EditorError 503 (with Retry-After) at once when
        the queue is full, and 413/415 for an oversized or non-image upload. The photo stays
        bytes until its turn comes; cancelling the Future before then drops it."""
        self._check_upload(data)
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self._jobs_lock:
            if self._pending >= self._capacity:
                raise self.busy_error()
            self._pending += 1
            if self._worker is None:
                self._worker = threading.Thread(target=self._serve_jobs, daemon=True,
                                                name="tlgan-invert")
                self._worker.start()
        future.add_done_callback(self._job_done)         # a cancelled job frees its slot
        self._jobs.put((future, data, kwargs))
        return future

    def _serve_jobs(self) -> None:
        while True:
            future, data, kwargs = self._jobs.get()
            if not future.set_running_or_notify_cancel():        # the client went away
                continue
            try:
                result = self.invert(data, **kwargs)
            except BaseException as e:                           # noqa: BLE001 (to the caller)
                future.set_exception(e)
            else:
                future.set_result(result)
            del data, future

    def invert(self, data: bytes, *, framing: str = "auto", box=None, refine: bool = True,
               seed: int = 0) -> dict:
        """Invert an uploaded photo now (in the calling thread): framing, latent,
        reconstruction, quality, photo id. The web app goes through `submit_invert`."""
        self._check_upload(data)
        try:
            photo = load_photo(data, max_pixels=self.limits.max_photo_pixels)
            target, info = frame_face(photo, self.gen.resolution, box=box, framing=framing,
                                      max_pixels=self.limits.max_photo_pixels)
        except PhotoError as e:
            raise _photo_error(e) from None
        del photo
        with self._invert_lock:
            t0 = time.perf_counter()
            self._progress = {"busy": True, "stage": "start", "done": 0, "total": 0}

            def progress(stage, done, total):
                self._progress = {"busy": True, "stage": stage, "done": done, "total": total}
            try:
                result = self.inverter(target[None], jax.random.key(seed), progress=progress,
                                       refine=bool(refine and self.inverter.config.refine_steps))
            finally:
                self._progress = {"busy": False, "stage": "", "done": 0, "total": 0}
            seconds = time.perf_counter() - t0
            self._last_invert_s = seconds
        photo_id = None
        if result.params is not None:
            photo_id = secrets.token_hex(16)
            with self._photos_lock:
                self._photos[photo_id] = result.params_for(0)
                while len(self._photos) > self.limits.stored_photos:
                    self._photos.popitem(last=False)
        z = result.z[0].tolist()
        rendered = self.render(z, {}, [], photo_id)
        return {"z": z, "photo": photo_id, "target_png": png_bytes(to_uint8(np.asarray(target))),
                "png": rendered["png"], "scores": rendered["scores"],
                "psnr": float(result.psnr[0]), "ssim": float(result.ssim[0]),
                "framing": info["framing"], "box": info["box"], "seconds": seconds}

