"""Command line of the editor: build the engine, compile it, serve it (or benchmark it).

  python -m tlgan_jax.serve                                   # embedded default, port 8000
  python -m tlgan_jax.serve --axes runs/discover/axes.npz --port 8080
  python -m tlgan_jax.serve --benchmark 300                   # render latency p50/p95, then exit

Without --axes the embedded default's axes are fitted once (OLS, --default_samples labelled
samples; a minute or two on a CPU) and cached in the tlgan_jax cache.
"""
from __future__ import annotations

import argparse
import json
import socket
import threading
import time
import urllib.request
from typing import Sequence

import numpy as np

from tlgan_jax.axes import Axes, models_named_by_axes
from tlgan_jax.invert import InversionConfig
from tlgan_jax.serve.editor import Editor, Limits, default_axes
from tlgan_jax.extractors import EMBEDDED_EXTRACTORS, load_extractor
from tlgan_jax.generators import EMBEDDED_GENERATOR, load_generator


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tlgan_jax.serve",
                                description="The tlgan_jax face editor (web app).")
    p.add_argument("--axes", help="axes.npz from experiments/discover_axes.py (default: fit "
                                  "and cache axes for the embedded default)")
    p.add_argument("--generator", help="generator name (default: the axes' generator, else "
                                       f"{EMBEDDED_GENERATOR})")
    p.add_argument("--extractors", help="comma-separated extractors for the scores (default: "
                                        "the axes', else " + ",".join(EMBEDDED_EXTRACTORS) + ")")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: loopback only)")
    p.add_argument("--allowed_host", action="append", default=[], metavar="NAME",
                   help="a Host name (or address) besides loopback that requests may carry, "
                        "e.g. the name a reverse proxy forwards; repeatable. Others get 421")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--default_samples", type=int, default=8192,
                   help="labelled samples for the default axes (without --axes)")
    p.add_argument("--invert_steps", type=int, default=150, help="Adam steps on z per upload")
    p.add_argument("--invert_restarts", type=int, default=2, help="starts per upload")
    p.add_argument("--refine_steps", type=int, default=100,
                   help="per-photo generator refinement steps (0: off)")
    p.add_argument("--feature_weight", type=float, default=InversionConfig.feature_weight,
                   help="weight of the extractor-score loss in the inversion")
    p.add_argument("--max_upload_mb", type=float, default=10.0)
    p.add_argument("--invert_queue", type=int, default=Limits.invert_queue,
                   help="uploads that may wait behind the one being inverted; more get 503")
    p.add_argument("--no_warm_invert", action="store_true",
                   help="do not compile the inversion at start (the first upload does)")
    p.add_argument("--benchmark", type=int, default=0, metavar="N",
                   help="serve on a free port, time N slider moves over HTTP, print p50/p95 "
                        "and exit")
    return p.parse_args(argv)


def build_editor(axes_path: str | None = None, generator: str | None = None,
                 extractors: Sequence[str] | None = None, *,
                 invert_config: InversionConfig | None = None, limits: Limits = Limits(),
                 default_samples: int = 8192) -> Editor:
    """An `Editor` for an axes file (or the embedded default's cached axes); not yet warm."""
    axes = Axes.load(axes_path) if axes_path else None
    gen_name, ext_names = models_named_by_axes(axes.metadata if axes is not None else {},
                                               axes_path, generator,
                                               list(extractors) if extractors else None)
    gen = load_generator(gen_name)
    exts = [load_extractor(e) for e in ext_names]
    if axes is None:
        print(f"fitting default axes ({default_samples} samples; cached after the first "
              f"time)…", flush=True)
        axes = default_axes(gen, exts, num_samples=default_samples)
    if axes.latent_space in gen.spaces():
        gen = gen.in_space(axes.latent_space)     # W / W+ axes: the editor works on w latents
    axes.check_generator(gen)
    cfg = invert_config or InversionConfig(steps=150, restarts=2, refine_steps=100)
    return Editor(gen, exts, axes, invert_config=cfg, limits=limits)


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
    """Time n slider moves (POST /api/render with random amounts and locks) over real HTTP
    against a local server; returns server-side and round-trip p50/p95 in milliseconds."""
    from tlgan_jax.serve.app import create_app
    server, url = start_server(create_app(editor))
    rng = np.random.default_rng(seed)
    z, _ = editor.random_latent(seed)
    names = list(editor.attributes)
    server_ms, client_ms = [], []
    try:
        for i in range(n + 10):
            amounts = {a: float(v) for a, v in zip(names, rng.uniform(-3, 3, len(names)))}
            lock = [a for a in names if rng.random() < 0.2]
            for a in lock:
                amounts.pop(a)
            body = json.dumps({"z": z, "amounts": amounts, "lock": lock}).encode()
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
    return {"renders": n, "server": pct(server_ms), "round_trip": pct(client_ms)}


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.invert_queue < 0:
        raise SystemExit("python -m tlgan_jax.serve: --invert_queue must be >= 0")
    limits = Limits(max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
                    invert_queue=args.invert_queue)
    try:
        cfg = InversionConfig(steps=args.invert_steps, restarts=args.invert_restarts,
                              init_pool=max(256, args.invert_restarts),
                              refine_steps=args.refine_steps, feature_weight=args.feature_weight)
    except ValueError as e:
        raise SystemExit(f"python -m tlgan_jax.serve: {e}") from None
    try:
        editor = build_editor(args.axes, args.generator,
                              args.extractors.split(",") if args.extractors else None,
                              invert_config=cfg, limits=limits,
                              default_samples=args.default_samples)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"python -m tlgan_jax.serve: {e}") from None
    t = time.perf_counter()
    editor.warmup(invert=False)
    print(f"render compiled in {time.perf_counter() - t:.1f} s "
          f"({editor.gen.name}, attributes {', '.join(editor.attributes)})", flush=True)
    if args.benchmark:
        print(json.dumps(benchmark(editor, args.benchmark), indent=2))
        return
    if not args.no_warm_invert:
        threading.Thread(target=editor.warmup, kwargs={"render": False}, daemon=True).start()
    import uvicorn
    from tlgan_jax.serve.app import create_app
    allowed = list(args.allowed_host)
    if args.host not in ("0.0.0.0", "::", ""):
        allowed.append(args.host)               # the address it listens on, when named
    print(f"editor at http://{args.host}:{args.port}  (API docs: /docs)", flush=True)
    uvicorn.run(create_app(editor, allowed_hosts=allowed), host=args.host, port=args.port,
                log_level="warning")
