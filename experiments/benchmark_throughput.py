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
median ratio. Defaults: configs/benchmark_throughput.py.
"""
import functools

import numpy as np

from tlgan_jax import cli
from tlgan_jax.bench import throughput


def main(cfg):
    models = {d: cli.load_models(cfg.generator, cfg.extractors, fast=d == "bfloat16")
              for d in cfg.dtype}
    log = functools.partial(print, flush=True)
    report, best = throughput.sweep(models, cfg.batch, cfg.num, cfg.repeats,
                                    cfg.agreement_samples, log=log)
    if cfg.peer_python:
        report["peer_rounds"] = throughput.peer_rounds(best, cfg.peer_python,
                                                       cfg.peer_script_path(), cfg.num,
                                                       cfg.peer_rounds, log=log)
        report["ratio_vs_peer"] = float(np.median([r["ratio"] for r in report["peer_rounds"]]))
        log(f"median ratio vs peer: {report['ratio_vs_peer']:.2f}x")
    throughput.write_report(report, cfg.json, cfg.csv)


if __name__ == "__main__":
    cli.run(main, cli.repo_config(__file__), doc=__doc__)
