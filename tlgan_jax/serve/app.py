"""The editor web app: a FastAPI JSON API (OpenAPI at /docs and /openapi.json) and a static
page (tlgan_jax/serve/static: plain HTML/JS/CSS, no build step).

    GET  /                 the editor page
    GET  /api/info         generator, attributes (with score meanings), limits, inversion setup
    POST /api/random       a random latent z ~ N(0, I)            {seed?} -> {z, seed}
    POST /api/render       full state -> base64 PNG + scores      {z, amounts, lock, photo?,
                                                                     layers? (W / W+ axes)}
    POST /api/render.png   the same state -> image/png
    POST /api/edit         full state -> the edited latent z'
    POST /api/score        {z, photo?} -> the extractors' scores of G(z)
    POST /api/invert       multipart photo upload -> z, reconstruction, PSNR/SSIM, photo id
    GET  /api/progress     steps done by the inversion running now
    GET  /api/stats        server-side render latency (p50/p95) since start
Bad input gets a 4xx with a message (`{"detail": "..."}`, or FastAPI's list of field errors
for 422); bodies over the limits get 413 before they are read into memory in full.

Requests from outside the machine's browser tabs are refused (`RequestGuard`): a Host header
that is not loopback (127.0.0.0/8, localhost, [::1]) or one of `allowed_hosts` gets 421
(this stops DNS rebinding), and a state-changing request (POST, …) that a browser marks as
cross-origin (an `Origin` other than the Host, or `Sec-Fetch-Site: cross-site/same-site`) gets
403; the editor's own page (same-origin fetches) and scripts without an Origin header (curl,
httpx) are served. Uploads wait in a bounded queue (`Limits.invert_queue`) on the editor's own
inversion thread; when it is full, /api/invert answers 503 with Retry-After at once.
"""

import asyncio
import base64
import ipaddress
import math
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from tlgan_jax.serve.editor import Editor, EditorError

STATIC = Path(__file__).parent / "static"


class ErrorBody(BaseModel):
    detail: str = Field(description="What was wrong with the request.")


def _b64png(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _safe(x: Any) -> Any:
    """Drop values JSON cannot carry (NaN/inf) from validation errors."""
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if isinstance(x, dict):
        return {k: _safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_safe(v) for v in x]
    return x


def _integral(v: Any) -> Any:
    """JSON Schema integers include 3.0; booleans are not numbers here."""
    if isinstance(v, bool):
        raise ValueError("expected an integer, got a boolean")
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


class BodyLimit:
    """ASGI middleware: refuse request bodies over `limit(path)` bytes with 413, reading at
    most that many bytes (also for chunked uploads without Content-Length)."""

    def __init__(self, app, json_limit: int, upload_limit: int):
        self.app, self.json_limit, self.upload_limit = app, json_limit, upload_limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        limit = self.upload_limit + 64 * 1024 if scope["path"] == "/api/invert" \
            else self.json_limit
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > limit
            except ValueError:
                too_big = False
            if too_big:
                return await self._refuse(send, limit)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            size += len(body)
            if size > limit:
                return await self._refuse(send, limit)
            chunks.append(body)
            if not message.get("more_body", False):
                break
        whole = b"".join(chunks)
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": whole, "more_body": False}
            return await receive()
        return await self.app(scope, replay, send)

    @staticmethod
    async def _refuse(send, limit):
        response = JSONResponse({"detail": f"request body too large: the limit here is "
                                           f"{limit} bytes"}, status_code=413)
        await response({"type": "http"}, None, send)


def _hostname(value: str) -> str | None:
    """The host part of a Host header value ("name", "name:port", "[v6]:port"), lower-case;
    None when it is malformed."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        if end < 0 or (value[end + 1:] and not value[end + 1:].startswith(":")):
            return None
        return value[1:end]
    host, _, port = value.partition(":")
    if ":" in port or (port and not port.isdigit()):
        return None
    return host or None


def is_loopback(host: str) -> bool:
    """localhost, an address in 127.0.0.0/8, or ::1."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _json_refusal(status: int, detail: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


class RequestGuard:
    """ASGI middleware deciding by what browsers send, before a body is read:
    - Host must be loopback or in `allowed_hosts` (exact host names/addresses), else 421;
    - a request other than GET/HEAD/OPTIONS is refused with 403 when `Sec-Fetch-Site` is
      "cross-site" or "same-site", or when `Origin` is present and its host[:port] is not
      the request's Host (an opaque "null" Origin included);
    - POST /api/invert: served only while fewer than the inversion queue's capacity (the
      running upload + Limits.invert_queue) are being served, else 503 with Retry-After and
      the body left unread; so at most that many upload bodies are in memory at once.
    Requests without Origin / Sec-Fetch-Site (scripts on the machine) pass the second check."""

    SAFE = ("GET", "HEAD", "OPTIONS")

    def __init__(self, app, editor: Editor, allowed_hosts=()):
        self.app, self.editor = app, editor
        self.allowed = {h.strip().lower().strip("[]") for h in allowed_hosts if h.strip()}

    def refusal(self, scope) -> JSONResponse | None:
        headers = {}
        for k, v in scope.get("headers") or []:
            headers.setdefault(k.decode("latin-1").lower(), v.decode("latin-1"))
        raw_host = headers.get("host", "")
        host = _hostname(raw_host)
        if host is None or not (is_loopback(host) or host in self.allowed):
            return _json_refusal(421, f"host {raw_host!r} is not served here: the editor "
                                      f"answers only to loopback addresses (127.0.0.1, "
                                      f"localhost, [::1]) and to hosts given with "
                                      f"--allowed_host")
        if scope["method"] in self.SAFE:
            return None
        site = headers.get("sec-fetch-site", "").strip().lower()
        if site in ("cross-site", "same-site"):
            return _json_refusal(403, f"cross-origin request refused (Sec-Fetch-Site: {site}): "
                                      f"only the editor's own page may change its state")
        origin = headers.get("origin")
        if origin is not None:
            _, sep, netloc = origin.strip().lower().partition("://")
            if not sep or netloc.rstrip("/") != raw_host.strip().lower():
                return _json_refusal(403, f"cross-origin request refused (Origin {origin!r} is "
                                          f"not this editor, {raw_host}): only the editor's "
                                          f"own page may change its state")
        return None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        response = self.refusal(scope)
        if response is None and scope["method"] == "POST" and scope["path"] == "/api/invert":
            if not self.editor.admit_upload():           # the queue is full: body left unread
                e = self.editor.busy_error()
                response = _json_refusal(e.status, str(e), e.headers)
            else:
                try:
                    return await self.app(scope, receive, send)
                finally:
                    self.editor.release_upload()
        if response is not None:
            return await response(scope, receive, send)
        return await self.app(scope, receive, send)


def create_app(editor: Editor, allowed_hosts=()) -> FastAPI:
    """The FastAPI app serving `editor` (call editor.warmup() before serving). Host names
    other than loopback that may reach it (e.g. behind a reverse proxy): `allowed_hosts`."""
    lim = editor.limits
    d = editor.gen.latent_dim
    names = editor.attributes
    Attr = Literal[names]                                          # type: ignore[valid-type]
    Amount = Annotated[float, Field(allow_inf_nan=False, ge=-lim.max_amount, le=lim.max_amount)]
    Coord = Annotated[float, Field(allow_inf_nan=False, ge=-lim.max_latent, le=lim.max_latent)]
    Latent = Annotated[list[Coord], Field(min_length=d, max_length=d,
                                          description=f"the latent z, {d} numbers")]
    PhotoId = Annotated[str | None, Field(
        default=None, pattern=r"^[0-9a-f]{32}$",
        description="id of an uploaded photo (from /api/invert): render with its refined "
                    "generator")]

    class EditState(BaseModel):
        """The editor's full state: z' = c(z) + Σ_a amounts[a]·n_a after locking (for W / W+
        axes each attribute may move only the style inputs `layers[a]`)."""
        model_config = ConfigDict(extra="forbid", strict=True)
        z: Latent
        amounts: dict[Attr, Amount] = Field(
            default_factory=dict, description="latent units moved along each attribute's axis")
        lock: list[Attr] = Field(default_factory=list, max_length=len(names),
                                 json_schema_extra={"uniqueItems": True},
                                 description="attributes locked (TL-GAN): the other axes are "
                                             "made orthogonal to theirs")
        photo: PhotoId = None

        @field_validator("lock")
        @classmethod
        def _unique(cls, v):
            if len(set(v)) != len(v):
                raise ValueError("lock lists an attribute more than once")
            return v

    State: type[EditState] = EditState
    layer_info = editor.layer_info()
    if layer_info is not None:                 # W / W+ axes: layer-wise edits
        names_re = "|".join(layer_info["presets"])
        LayerRange = Annotated[str, Field(
            max_length=16, pattern=rf"^\s*({names_re + '|' if names_re else ''}"
                                   rf"-?\d{{0,4}}:-?\d{{0,4}})\s*$",
            description=f"style inputs START:STOP (a Python slice of the "
                        f"{layer_info['num_ws']} inputs) or a preset: "
                        + (", ".join(f"{k} {v[0]}-{v[-1]}"
                                     for k, v in layer_info["presets"].items()) or "none"))]

        class LayeredEditState(EditState):
            layers: dict[Attr, LayerRange] = Field(     # type: ignore[valid-type]
                default_factory=dict,
                description="the style inputs each attribute moves (layer-wise edits, "
                            "GANSpace); attributes not named move all of them. With layers, "
                            "z_edited is the w+ latent")
        State = LayeredEditState

    def _layers(state) -> dict | None:
        return getattr(state, "layers", None)

    class ScoreRequest(BaseModel):
        model_config = ConfigDict(extra="forbid", strict=True)
        z: Latent
        photo: PhotoId = None

    class RandomRequest(BaseModel):
        model_config = ConfigDict(extra="forbid", strict=True)
        seed: Annotated[int, Field(ge=0, lt=2 ** 31), BeforeValidator(_integral)] | None = None

    class RandomResponse(BaseModel):
        z: list[float]
        seed: int

    class Identity(BaseModel):
        descriptor: str
        distance: float = Field(description="face-descriptor distance, edited vs unedited face")
        threshold: float = Field(description="same person below this distance")
        kept: bool

    class RenderResponse(BaseModel):
        image: str = Field(description="data:image/png;base64,… of G(z')")
        scores: dict[str, float] = Field(description="every extractor score of the image")
        z_edited: list[float]
        z_edited_space: str = Field(description="the space of z_edited: the axes' (z, w, w+)"
                                                ", or w+ when the state names layers")
        identity: Identity | None = Field(
            None, description="the edit's identity figure (null: the editor has no descriptor)")
        ms: float = Field(description="server time for this render, milliseconds")

    class EditResponse(BaseModel):
        z_edited: list[float]
        z_edited_space: str

    class ScoreResponse(BaseModel):
        scores: dict[str, float]

    class InvertResponse(BaseModel):
        z: list[float]
        photo: str | None = Field(description="id of the refined generator, or null")
        target: str = Field(description="the framed photo the latent was fitted to (PNG)")
        image: str = Field(description="the reconstruction (PNG)")
        scores: dict[str, float]
        psnr: float
        ssim: float
        framing: str
        box: list[int]
        seconds: float

    errors = {s: {"model": ErrorBody} for s in (400, 403, 404, 413, 415, 421, 503)}
    app = FastAPI(
        title="tlgan_jax editor", version="1",
        description="Edit faces along attribute axes (TL-GAN) and invert photos. A slider move "
                    "is one POST /api/render with the full state.")
    app.state.editor = editor

    @app.exception_handler(EditorError)
    async def _editor_error(request: Request, exc: EditorError):
        return JSONResponse({"detail": str(exc)}, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        detail = [{k: _safe(v) for k, v in e.items() if k in ("loc", "msg", "type")}
                  for e in exc.errors()]
        return JSONResponse({"detail": jsonable_encoder(detail)}, status_code=422)

    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(STATIC / "index.html")

    @app.get("/api/info")
    def info() -> dict[str, Any]:
        """Generator, attributes (slider per axis; score when an extractor gives it), limits."""
        cfg = editor.inverter.config
        return {
            "generator": {"name": editor.gen.name, "latent_dim": d,
                          "latent_space": editor.gen.latent_space,
                          "resolution": editor.gen.resolution},
            "attributes": [{"name": a, "has_score": a in editor.score_names,
                            "binary": bool(editor.binary.get(a, False)),
                            "score_meaning": editor.score_meaning.get(a, ""),
                            "judges": [{"name": b, "binary": bool(editor.binary.get(b, False)),
                                        "score_meaning": editor.score_meaning.get(b, "")}
                                       for b in editor.judged.get(a, ())]} for a in names],
            "scores": list(editor.score_names),
            "layers": editor.layer_info(),
            "identity": (None if editor.descriptor is None else
                         {"descriptor": editor.descriptor.name,
                          "threshold": float(editor.descriptor.threshold)}),
            "limits": {"max_amount": lim.max_amount, "max_latent": lim.max_latent,
                       "max_upload_bytes": lim.max_upload_bytes,
                       "max_photo_pixels": lim.max_photo_pixels},
            "invert": {"steps": cfg.steps, "restarts": cfg.restarts,
                       "refine_steps": cfg.refine_steps, "feature_weight": cfg.feature_weight},
        }

    @app.post("/api/random", response_model=RandomResponse, responses=errors)
    def random(req: RandomRequest):
        """A random latent z ~ N(0, I) (from `seed` when given)."""
        z, seed = editor.random_latent(req.seed)
        return {"z": z, "seed": seed}

    @app.post("/api/render", response_model=RenderResponse, responses=errors)
    def render(state: State, response: Response):  # type: ignore[valid-type]
        """Render the edited face and score it (what a slider move calls)."""
        r = editor.render(state.z, state.amounts, state.lock, state.photo, _layers(state))
        response.headers["Server-Timing"] = f"render;dur={r['ms']:.2f}"
        return {"image": _b64png(r["png"]), "scores": r["scores"], "z_edited": r["z_edited"],
                "z_edited_space": r["z_edited_space"], "identity": r["identity"],
                "ms": r["ms"]}

    @app.post("/api/render.png", response_class=Response, responses={
        200: {"content": {"image/png": {}}, "description": "the edited face"}, **errors})
    def render_png(state: State):  # type: ignore[valid-type]
        """The edited face as a PNG file."""
        r = editor.render(state.z, state.amounts, state.lock, state.photo, _layers(state))
        return Response(r["png"], media_type="image/png",
                        headers={"Server-Timing": f"render;dur={r['ms']:.2f}"})

    @app.post("/api/edit", response_model=EditResponse, responses=errors)
    def edit(state: State):  # type: ignore[valid-type]
        """The edited latent z' = c(z) + D t (no rendering); w+ when the state names layers."""
        z_edited, space = editor.edit(state.z, state.amounts, state.lock, _layers(state))
        return {"z_edited": z_edited, "z_edited_space": space}

    @app.post("/api/score", response_model=ScoreResponse, responses=errors)
    def score(req: ScoreRequest):
        """The extractors' scores of G(z)."""
        return {"scores": editor.score(req.z, req.photo)}

    @app.post("/api/invert", response_model=InvertResponse, responses=errors)
    async def invert(
            file: Annotated[UploadFile, File(description="a photo (PNG, JPEG, WebP, …)")],
            framing: Annotated[Literal["auto", "center", "full"], Form()] = "auto",
            box: Annotated[str | None, Form(
                pattern=r"^\s*-?\d+(\.\d+)?(\s*,\s*-?\d+(\.\d+)?){3}\s*$",
                description="crop left,top,right,bottom in pixels (overrides framing)")] = None,
            refine: Annotated[bool, Form(description="tune the generator to the photo")] = True,
            seed: Annotated[int, Form(ge=0, lt=2**31)] = 0):
        """Fit a latent (and, with refine, a per-photo generator) to the uploaded photo. Uploads
        wait in a bounded queue for the inversion thread; a full queue answers 503 at once."""
        data = await file.read(lim.max_upload_bytes + 1)
        await file.close()
        box_values = [float(v) for v in box.split(",")] if box else None
        job = editor.submit_invert(data, framing=framing, box=box_values, refine=refine,
                                   seed=seed)
        del data
        r = await asyncio.wrap_future(job)   # cancelling this await drops a job still queued
        return {"z": r["z"], "photo": r["photo"], "target": _b64png(r["target_png"]),
                "image": _b64png(r["png"]), "scores": r["scores"], "psnr": r["psnr"],
                "ssim": r["ssim"], "framing": r["framing"], "box": r["box"],
                "seconds": r["seconds"]}

    @app.get("/api/progress")
    def progress() -> dict[str, Any]:
        """The photo being inverted now: {busy, stage ("z", then "refine"), done, total}."""
        return editor.progress()

    @app.get("/api/stats")
    def stats() -> dict[str, Any]:
        """Server-side render latency since start (milliseconds)."""
        return editor.latency()

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(BodyLimit, json_limit=lim.max_json_bytes,
                       upload_limit=lim.max_upload_bytes)
    app.add_middleware(RequestGuard, editor=editor, allowed_hosts=allowed_hosts)  # outermost
    return app
