"""Command line of the editor: build the engine, compile it, serve it (or benchmark it).

  python -m tlgan_jax.serve                                   # embedded default, port 8000
  python -m tlgan_jax.serve --axes runs/discover/axes.npz --port 8080
  python -m tlgan_jax.serve --benchmark 300                   # render latency p50/p95, then exit

Without --axes the embedded default's axes are fitted once (OLS, --default_samples labelled
samples; a minute or two on a CPU) and cached in the tlgan_jax cache.
"""
from __future__ import annotations

import dataclasses
import errno
import importlib.util
import json
import socket
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Sequence

import numpy as np

from tlgan_jax import cli
from tlgan_jax.axes import Axes, models_named_by_axes
from tlgan_jax.discover import default_axes
from tlgan_jax.extractors import EMBEDDED_EXTRACTORS
from tlgan_jax.generators import EMBEDDED_GENERATOR
from tlgan_jax.invert import InversionConfig
from tlgan_jax.serve.editor import Editor, Limits


@dataclasses.dataclass(frozen=True)
class EditorConfig:
    """The editor's flags (also `configs/serve.py`)."""
    axes: str | None = cli.flag(None, "axes.npz from experiments/discover_axes.py, e.g. "
                                "runs/digiface64/axes.npz (default: axes for the embedded "
                                "default, fitted once and cached).")
    generator: str | None = cli.flag(None, "Generator (default: the one the axes name, else "
                                     f"{EMBEDDED_GENERATOR}).")
    extractors: tuple[str, ...] = cli.flag((), "Extractors for the scores, comma-separated "
                                           "(default: the axes', else "
                                           f"{','.join(EMBEDDED_EXTRACTORS)}).")
    judges: tuple[str, ...] = cli.judges_flag()
    host: str = cli.flag("127.0.0.1", "Address to listen on (default: this machine only).",
                         nonempty=True)
    allowed_host: tuple[str, ...] = cli.flag((), "Host names (or addresses) besides loopback "
                                             "that requests may carry, comma-separated, e.g. "
                                             "the name a reverse proxy forwards; requests "
                                             "with other Host headers get 421.")
    port: int = cli.flag(8000, "Port to listen on.", min=1, max=65535)
    default_samples: int = cli.flag(8192, "Labelled samples for the default axes (without "
                                    "--axes).", min=16)
    invert_steps: int = cli.flag(150, "Adam steps on z per upload.", min=1)
    invert_restarts: int = cli.flag(2, "Starts per upload.", min=1)
    refine_steps: int = cli.flag(100, "Per-photo generator tuning steps (0: off).", min=0)
    feature_weight: float = cli.flag(InversionConfig.feature_weight, "Weight of the "
                                     "extractor-score loss in the inversion.", min=0)
    max_upload_mb: float = cli.flag(10.0, "Largest photo upload in MB.", gt=0)
    identity: str = cli.identity_flag("none", "Face descriptor for a live identity figure "
                                      "under the face (descriptor distance of the edited to "
                                      "the unedited face and whether it stays under the "
                                      "same-person threshold): faceapi, or none. The unedited "
                                      "face is drawn once per face.")
    invert_queue: int = cli.flag(Limits.invert_queue, "Uploads that may wait behind the one "
                                 "being inverted; more get 503.", min=0)
    no_warm_invert: bool = cli.flag(False, "Do not compile the inversion at start (the first "
                                    "upload does).")
    benchmark: int = cli.flag(0, "Serve on a free port, time N slider moves over HTTP, print "
                              "p50/p95 and exit (0: serve normally).", min=0)

    def invert_config(self) -> InversionConfig:
        return InversionConfig(steps=self.invert_steps, restarts=self.invert_restarts,
                               init_pool=max(256, self.invert_restarts),
                               refine_steps=self.refine_steps, feature_weight=self.feature_weight)

    def limits(self) -> Limits:
        return Limits(max_upload_bytes=int(self.max_upload_mb * 1024 * 1024),
                      invert_queue=self.invert_queue)

    def allowed_hosts(self) -> list[str]:
        """--allowed_host, and the address it listens on when one is named."""
        allowed = list(self.allowed_host)
        if self.host not in ("0.0.0.0", "::", ""):
            allowed.append(self.host)
        return allowed

    def validate(self):
        for module in ("fastapi", "uvicorn", "multipart"):
            if importlib.util.find_spec(module) is None:
                raise cli.UserError(f"the editor needs the 'ui' extra ({module} is missing): "
                                    f"pip install -e '.[ui]'")
        meta = cli.check_axes(self.axes).metadata if self.axes else {}
        # an axes file names only built-in models; files are the user's to name
        generator, extractors = cli.models_for_axes(meta, self.axes, self.generator or None,
                                                    list(self.extractors) or None)
        cli.check_generator(generator)
        cli.check_extractors(extractors)
        cli.check_judges(self.judges)
        if any(not h or any(c.isspace() or c in "/@" for c in h) for h in self.allowed_host):
            raise cli.ConfigError("allowed_host", "give host names or addresses (no scheme, "
                                  "path or spaces), e.g. editor.example.org",
                                  self.allowed_host)
        if not self.benchmark:
            check_port_free(self.host, self.port)


def check_port_free(host: str, port: int) -> None:
    """ConfigError unless (host, port) can be bound now (checked before anything loads)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise cli.ConfigError("host", f"not an address of this machine ({e.strerror})",
                              host) from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)    # as uvicorn binds
        try:
            s.bind(address)
        except OSError as e:
            why = "is in use (another editor?)" if e.errno == errno.EADDRINUSE else e.strerror
            raise cli.ConfigError("port", f"{host}:{port} {why}; pass another --port, e.g. "
                                  f"--port={port + 1}", port) from None


def build_editor(axes_path: str | None = None, generator: str | None = None,
                 extractors: Sequence[str] | None = None, *,
                 invert_config: InversionConfig | None = None, limits: Limits = Limits(),
                 default_samples: int = 8192, identity: str = "none",
                 judges: Sequence[str] = ("auto",)) -> Editor:
    """An `Editor` for an axes file (or the embedded default's cached axes); not yet warm.
    identity: a face descriptor name (`load_face_descriptor`) for the live identity figure;
    judges: --judges (`cli.judges_flag`: auto = the embedded family that defined no axis)."""
    axes = Axes.load(axes_path) if axes_path else None
    gen_name, ext_names = models_named_by_axes(axes.metadata if axes is not None else {},
                                               axes_path or "the default axes", generator,
                                               list(extractors) if extractors else None)
    print(f"loading generator {gen_name} and extractors {', '.join(ext_names)}...", flush=True)
    gen, exts = cli.load_models(gen_name, ext_names)
    if axes is None:
        print(f"no --axes given: using default axes for {gen.name} x {', '.join(ext_names)} "
              f"(OLS on {default_samples} samples, fitted once, then cached). To edit with axes "
              f"you made: --axes runs/<workdir>/axes.npz (from experiments/discover_axes.py)",
              flush=True)
        axes = default_axes(gen, exts, num_samples=default_samples, progress=True)
    if axes.latent_space in gen.spaces():
        gen = gen.in_space(axes.latent_space)     # W / W+ axes: the editor works on w latents
    cli.check_latents(axes, gen, "generator" if generator else "axes", generator or axes_path)
    cfg = invert_config or InversionConfig(steps=150, restarts=2, refine_steps=100)
    judge_nets, descriptor = cli.load_judges(judges, ext_names, exts, identity)
    return Editor(gen, exts, axes, invert_config=cfg, limits=limits, descriptor=descriptor,
                  judges=judge_nets)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(app, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"):
    """Run uvicorn in a daemon thread; returns (server, base_url). Stop: server.should_exit."""
    import uvicorn
    port = port or _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        if time.time() > deadline or not thread.is_alive():
            raise RuntimeError("the editor server did not start")
        time.sleep(0.02)
    return server, f"http://{host}:{port}"


def benchmark(editor: Editor, n: int = 200, seed: int = 0) -> dict:
    """Time n slider moves (POST /api/render with random amounts and locks, and for W / W+
    axes random style layers) over real HTTP against a local server; returns server-side and
    round-trip p50/p95 in milliseconds, and the editor's generator, resolution and
    identity descriptor."""
    from tlgan_jax.serve.app import create_app
    server, url = start_server(create_app(editor))
    rng = np.random.default_rng(seed)
    z, _ = editor.random_latent(seed)
    names = list(editor.attributes)
    presets = list((editor.layer_info() or {"presets": {}})["presets"])
    server_ms, client_ms, layered = [], [], 0
    try:
        for i in range(n + 10):
            amounts = {a: float(v) for a, v in zip(names, rng.uniform(-3, 3, len(names)))}
            lock = [a for a in names if rng.random() < 0.2]
            for a in lock:
                amounts.pop(a)
            state = {"z": z, "amounts": amounts, "lock": lock}
            if presets:                                    # layer-wise edits (W / W+ axes)
                state["layers"] = {a: presets[int(rng.integers(len(presets)))]
                                   for a in names if rng.random() < 0.5}
                layered += bool(state["layers"]) and i >= 10
            body = json.dumps(state).encode()
            req = urllib.request.Request(url + "/api/render", body,
                                         {"Content-Type": "application/json"})
            t = time.perf_counter()
            with urllib.request.urlopen(req) as r:
                out = json.loads(r.read())
            if i >= 10:                                    # the first ones warm the caches
                client_ms.append((time.perf_counter() - t) * 1e3)
                server_ms.append(out["ms"])
    finally:
        server.should_exit = True

    def pct(v):
        return {"p50_ms": float(np.percentile(v, 50)), "p95_ms": float(np.percentile(v, 95))}
    return {"generator": editor.gen.name, "resolution": editor.gen.resolution,
            "attributes": len(names), "extractors": [e.name for e in editor.extractors],
            "judges": [e.name for e in editor.judges],
            "identity": editor.descriptor.name if editor.descriptor is not None else None,
            "renders": n, "layer_wise_renders": int(layered), "server": pct(server_ms),
            "round_trip": pct(client_ms)}


def serve(cfg: EditorConfig) -> None:
    """Build, compile and serve (or benchmark) the editor for a validated config."""
    limits = cfg.limits()
    editor = build_editor(cfg.axes, cfg.generator, cfg.extractors or None,
                          invert_config=cfg.invert_config(), limits=limits,
                          default_samples=cfg.default_samples, identity=cfg.identity,
                          judges=cfg.judges)
    print(f"compiling the render ({editor.gen.name}, {len(editor.attributes)} attributes)...",
          flush=True)
    t = time.perf_counter()
    editor.warmup(invert=False)
    print(f"render compiled in {time.perf_counter() - t:.1f} s "
          f"({editor.gen.name}, attributes {', '.join(editor.attributes)})", flush=True)
    if cfg.benchmark:
        print(json.dumps(benchmark(editor, cfg.benchmark), indent=2))
        return
    if not cfg.no_warm_invert:
        print("compiling the photo inversion in the background (the first upload waits for "
              "it)", flush=True)
        threading.Thread(target=editor.warmup, kwargs={"render": False}, daemon=True).start()
    import uvicorn

    from tlgan_jax.serve.app import create_app
    print(f"editor at http://{cfg.host}:{cfg.port}  (API docs: /docs; Ctrl-C stops it)",
          flush=True)
    uvicorn.run(create_app(editor, allowed_hosts=cfg.allowed_hosts()), host=cfg.host,
                port=cfg.port, log_level="warning")


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m tlgan_jax.serve` / `tlgan-editor`: flags from `EditorConfig` (see --help)."""
    argv = list(sys.argv if argv is None else [sys.argv[0], *argv])
    prog = "tlgan-editor" if Path(argv[0]).name == "tlgan-editor" else "python -m tlgan_jax.serve"
    cli.run(serve, EditorConfig, argv=argv, doc=__doc__, prog=prog)
