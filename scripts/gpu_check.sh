#!/usr/bin/env bash
# Issue #4's GPU checks in one call on a GPU machine (one H200 here), about 6 min:
#   1. parity on the GPU: pg-GAN fixtures in float32 at highest precision (<= 1e-5) and the
#      bf16 fast path within tolerance; bf16 labelling vs float32 on a fixture generator;
#   2. the throughput sweep at 1024² (random weights of the real architecture, CelebA-40
#      extractor with random weights) with the fast path's attribute agreement;
#   3. the PyTorch reference (scripts/peer_pggan_torch.py): its fixture parity, then
#      fp32 and bf16 + channels_last + torch.compile timed in the same run.
# Needs a python3 with jax (CUDA), flax, optax, orbax-checkpoint, absl-py, pillow, h5py,
# onnx (and torch for 3); no network, no embedded weights. The fixtures do not travel with
# the repository: copy them into the ignored folder .gpu/ first and carry it:
#   mkdir -p .gpu && cp -r ../shared/fixtures/pggan .gpu/
#   device run: bash scripts/gpu_check.sh "$OUT"      (carry: .gpu; 8 files come back)
# Overrides (e.g. a dry run on CPU): PY, PEER_PY, PEER_DEVICE, GENERATOR, BATCHES, NUM,
# PEER_MODES, PEER_BATCH, PEER_NUM.
set -uo pipefail
out=${1:-runs/gpu_check}
mkdir -p "$out" && rm -f "$out"/peer_*.json "$out"/throughput.json
PY=${PY:-python3}
GENERATOR=${GENERATOR:-pggan1024}
BATCHES=${BATCHES:-32,128}
NUM=${NUM:-4096}
PEER_MODES=${PEER_MODES:-fp32 bf16-compile}
PEER_NUM=${PEER_NUM:-1024}
PEER_PY=${PEER_PY:-$PY}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
export TLGAN_PGGAN_FIXTURES=${TLGAN_PGGAN_FIXTURES:-$PWD/.gpu/pggan}
status=0

{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null
  $PY -c "import jax; print('jax', jax.__version__, jax.devices())"; } | tee "$out/machine.txt"

echo "== 1. parity on $($PY -c 'import jax; print(jax.default_backend())')" | tee "$out/parity.log"
timeout 150 $PY -m pytest -q -p no:cacheprovider tests/test_pggan.py \
    tests/test_throughput.py::test_bf16_fast_path_reproduces_float32_attribute_outputs \
    2>&1 | tee -a "$out/parity.log" || status=1

echo "== 2. throughput: $GENERATOR, batches $BATCHES, float32 and bfloat16"
timeout 330 $PY experiments/benchmark_throughput.py --generator="$GENERATOR" \
    --extractors=celeba40-random --batch="$BATCHES" --dtype=float32,bfloat16 --num="$NUM" \
    --json="$out/throughput.json" 2>&1 | tee "$out/throughput.log" || status=1

echo "== 3. PyTorch reference, same machine, same run, same generator"
peer_weights=()
[[ $GENERATOR == pggan:* ]] && peer_weights=(--weights="${GENERATOR#pggan:}")
timeout 60 $PEER_PY scripts/peer_pggan_torch.py --check_fixtures="$TLGAN_PGGAN_FIXTURES" 2>&1 \
    | tee "$out/peer.log" || status=1
for mode in $PEER_MODES; do
  timeout 90 $PEER_PY scripts/peer_pggan_torch.py "${peer_weights[@]}" \
      --device="${PEER_DEVICE:-cuda}" --mode="$mode" --batch="${PEER_BATCH:-32}" \
      --num="$PEER_NUM" --compile_mode=default --json="$out/peer_$mode.json" 2>&1 | tail -3 \
      | tee -a "$out/peer.log" || status=1
done

echo "== summary"
$PY - "$out" <<'PYEOF' | tee "$out/summary.txt"
import glob, json, sys
out = sys.argv[1]
bench = json.load(open(f"{out}/throughput.json"))
for r in bench["results"]:
    print(f"ours {r['dtype']:9s} batch {r['batch']:4d}: {r['samples_per_second']:9.1f} labelled "
          f"samples/s, {r['tflops_per_second'] or 0:.1f} TFLOP/s")
agree = bench.get("fast_path_agreement")
if agree:
    print(f"bf16 vs float32 attribute outputs: rms rel {agree['rms_rel']:.2e}, max rel "
          f"{agree['max_rel']:.2e}, within tolerance: {agree['within_bf16_tolerance']}")
for path in sorted(glob.glob(f"{out}/peer_*.json")):
    peer = json.load(open(path))
    print(f"peer torch {peer['mode']} batch {peer['batch']}: {peer['images_per_second']:.1f} "
          f"images/s (generator only); ours best / peer = "
          f"{bench['samples_per_second'] / peer['images_per_second']:.2f}x")
PYEOF
exit $status
