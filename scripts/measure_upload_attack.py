"""Peak RSS growth of the editor process under hostile uploads (docs/security.md).

    python scripts/measure_upload_attack.py [--box=-25000,-25000,-24000,-24000] [--uploads=41]

For each attack, starts the editor (embedded DCGAN, random axes, no extractors, a 2-step
inversion so the figures are about the request path, not the optimiser) in a fresh child
process on a free loopback port, warms it with one small upload, runs the attack and reports
the child's peak resident memory (VmHWM, reset through /proc/PID/clear_refs) minus its resident
memory before the attack, and the time of one render sent 2 s into the attack:
  box        one ~38 KB flat 6300×6300 PNG with a crop box far outside the photo
  concurrent `--uploads` of that PNG at once
  large      `--uploads` uploads of a ~9.8 MB noise PNG (1800×1800) at once
Run against any checkout with PYTHONPATH pointing at it (the child uses only the API common
to old and new versions).
"""
import argparse
import concurrent.futures
import io
import json
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
from PIL import Image

CHILD = textwrap.dedent("""
    import sys, time, numpy as np
    from tlgan_jax.axes import Axes
    from tlgan_jax.generators import load_generator
    from tlgan_jax.invert import InversionConfig
    from tlgan_jax.serve import Editor, create_app
    from tlgan_jax.serve.launch import start_server
    gen = load_generator("digiface64")
    axes = Axes.from_vectors(np.random.default_rng(0).normal(size=(gen.latent_dim, 2)),
                             ["a", "b"])
    ed = Editor(gen, [], axes, invert_config=InversionConfig(steps=2, restarts=1, init_pool=2,
                                                             refine_steps=0))
    ed.warmup()
    server, url = start_server(create_app(ed))
    print(url, flush=True)
    while True:
        time.sleep(1)
""")


def _status(pid: int) -> dict:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS", "VmHWM")):
                k, v = line.split(":")
                out[k] = int(v.split()[0]) * 1024
    return out


def _png(array) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "PNG", optimize=True)
    return buf.getvalue()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--box", default="-25000,-25000,-24000,-24000")
    p.add_argument("--uploads", type=int, default=41)
    p.add_argument("--attacks", default="box,concurrent,large")
    args = p.parse_args()
    import httpx
    flat = _png(np.full((6300, 6300, 3), 128, np.uint8))
    noise = _png(np.random.default_rng(0).integers(0, 256, (1800, 1800, 3), np.uint8))
    small = _png(np.full((96, 96, 3), 100, np.uint8))
    results = {"flat_png_bytes": len(flat), "noise_png_bytes": len(noise)}
    for attack in args.attacks.split(","):
        child = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE,
                                 text=True, env=dict(os.environ, JAX_PLATFORMS="cpu"))
        try:
            url = child.stdout.readline().strip()

            def post(data, box=None, url=url):
                form = {"framing": "center", "refine": "false", **({"box": box} if box else {})}
                try:
                    r = httpx.post(url + "/api/invert", files={"file": ("a.png", data)},
                                   data=form, timeout=600)
                    return r.status_code
                except httpx.HTTPError as e:
                    return type(e).__name__
            assert post(small) == 200                     # warm: one inversion done
            time.sleep(1)
            before = _status(child.pid)["VmRSS"]
            with open(f"/proc/{child.pid}/clear_refs", "w") as f:
                f.write("5")                               # reset VmHWM to the current RSS
            n = 1 if attack == "box" else args.uploads
            data, box = (noise, None) if attack == "large" else (flat, args.box)
            t = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(n) as pool:
                jobs = [pool.submit(post, data, box) for _ in range(n)]
                time.sleep(2.0)                            # the uploads are in flight
                t_render = time.perf_counter()
                render = httpx.post(url + "/api/render", json={"z": [0.0] * 100},
                                    timeout=600).status_code
                render_s = time.perf_counter() - t_render
                codes = [j.result() for j in jobs]
            wall = time.perf_counter() - t
            peak = _status(child.pid)["VmHWM"]
        finally:
            child.kill()
            child.wait()
        statuses = {}
        for c in codes:
            statuses[str(c)] = statuses.get(str(c), 0) + 1
        results[attack] = {"uploads": n, "box": box, "statuses": statuses,
                           "seconds": round(wall, 1), "rss_before_mb": round(before / 2**20),
                           "peak_rss_mb": round(peak / 2**20),
                           "peak_growth_mb": round((peak - before) / 2**20),
                           "render_during": render, "render_during_s": round(render_s, 3)}
        print(attack, json.dumps(results[attack]), flush=True)
    print(json.dumps(results, indent=1))

if __name__ == "__main__":
    main()
