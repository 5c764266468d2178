"""A/B of the CPU labeller's forms on this machine, alternating with the packages' own runtimes
(the evidence for the defaults in tlgan_jax.sampling; docs/cpu_notes.md).

  python scripts/cpu_labeller_ab.py --peer_python=PY [--num=1024] [--rounds=4] [--json=out.json]

Forms, all labelling the same latents (embedded default: digiface64 + gender + age, batch 256):
  default        Sampler() as shipped (a device per core, 32-row lax.map, options of
                 sampling.labeller_options)
  m16, m64       the same with 16- / 64-row micro-batches
  1dev           one device, 32-row micro-batches, YNN fusions off, all cores' threads
  before         the labeller before issue 15: jax.jit(label) on one device, XLA's defaults
Per round: each form's labelled samples/s, then the peer's; the table is the median ratio.
"""
import argparse
import json
import sys
import time

import jax
import numpy as np

from tlgan_jax import runtime


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--peer_python", required=True)
    p.add_argument("--peer_script", default=None)
    p.add_argument("--num", type=int, default=1024)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    print(runtime.configure(), flush=True)
    from tlgan_jax.bench import throughput as t
    from tlgan_jax.sampling import Sampler, make_labeller

    gen, exts = t.load_models("digiface64", ["gender", "age"])
    batch = 256
    forms = {"default": Sampler(gen, exts, batch_size=batch),
             "m16": Sampler(gen, exts, batch_size=batch, micro_batch=16),
             "m64": Sampler(gen, exts, batch_size=batch, micro_batch=64),
             "1dev": Sampler(gen, exts, batch_size=batch, devices=jax.devices()[:1])}
    label, params = make_labeller(gen, exts)
    before = jax.jit(label)
    params0 = jax.device_put(params, jax.devices()[0])

    def run_before(seed):
        z = gen.sample_latents(jax.random.key(seed), args.num)
        t0 = time.perf_counter()
        ys = [before(params0, z[i:i + batch]) for i in range(0, args.num, batch)]
        np.concatenate([np.asarray(y) for y in ys])
        return args.num / (time.perf_counter() - t0)

    for s in forms.values():
        t.warm_up(s, batch)
    run_before(0)
    rounds = []
    for r in range(args.rounds):
        row = {"load_average_before": t.load_average()}
        for name, s in forms.items():
            row[name] = args.num / t.timed_run(s, args.num, seed=r)
        row["before"] = run_before(r)
        row["peer"] = t.run_peer(args.peer_python, args.num, args.peer_script)["samples_per_second"]
        row["load_average_after"] = t.load_average()
        rounds.append(row)
        print(json.dumps(row), flush=True)
    names = list(forms) + ["before"]
    table = {n: float(np.median([x[n] / x["peer"] for x in rounds])) for n in names}
    for n in names:
        print(f"  {n:10s} median ratio vs peer {table[n]:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": t.machine_info(), "rounds": rounds, "median_ratio": table}, f,
                      indent=1)


if __name__ == "__main__":
    sys.exit(main())
