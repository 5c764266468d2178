"""The editor's render latency for a generator without fitted axes (e.g. StyleGAN2 at 1024²):
random unit axes in the chosen latent space stand in for fitted ones (the render costs the
same), then `python -m tlgan_jax.serve --benchmark` over real HTTP, with and without the live
identity figure. Writes one JSON with the machine and its load.

  python scripts/editor_latency.py --generator=stylegan2-1024 --latent_space=w \
      --renders=40 --json=docs/benchmarks/editor_stylegan2_cpu.json

For W / W+ axes the slider moves also pick random style layers (coarse / middle / fine), so
the figures cover layer-wise edits.
"""
import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--generator", default="stylegan2-1024")
    p.add_argument("--latent_space", default="w", choices=("z", "w", "w+"))
    p.add_argument("--extractors", default="gender,age")
    p.add_argument("--judges", default="none", help="as the editor's --judges")
    p.add_argument("--renders", type=int, default=40)
    p.add_argument("--identity", default="none,faceapi",
                   help="comma-separated: none and/or faceapi (one benchmark each)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)

    from tlgan_jax import runtime
    print(runtime.configure(), flush=True)
    from tlgan_jax.axes import Axes
    from tlgan_jax.bench import machine
    from tlgan_jax.generators import load_generator
    from tlgan_jax.serve.launch import benchmark, build_editor

    extractors = args.extractors.split(",")
    gen = load_generator(args.generator).in_space(args.latent_space)
    names = ("a0", "a1", "a2")
    vectors = np.random.default_rng(0).standard_normal((gen.latent_dim, len(names)))
    tmp = Path(tempfile.mkdtemp(prefix="tlgan-latency-"))
    Axes.from_vectors(vectors, names, method="random", metadata={
        "generator": args.generator, "latent_space": args.latent_space,
        "extractors": extractors}).save(tmp / "axes.npz")
    report = {"what": f"editor render latency over HTTP: {args.generator} in "
                      f"{args.latent_space}, {len(names)} random axes, extractors "
                      f"{', '.join(extractors)}; batch 1, fp32, PNG encode included",
              "machine": machine.machine_info(), "load_start": machine.load_average(),
              "runs": []}
    for identity in args.identity.split(","):
        editor = build_editor(str(tmp / "axes.npz"), args.generator, extractors,
                              identity=identity, judges=args.judges.split(","))
        t = time.perf_counter()
        editor.warmup(invert=False)
        compile_s = time.perf_counter() - t
        result = benchmark(editor, args.renders)
        result.update(compile_s=round(compile_s, 1), load_after=machine.load_average())
        print(json.dumps(result), flush=True)
        report["runs"].append(result)
    report["load_end"] = machine.load_average()
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
        print(f"wrote {args.json}")
    os.remove(tmp / "axes.npz")


if __name__ == "__main__":
    main()
