"""Golden vectors for the face-api ports: tests/golden/faceapi_{native112,native150,full}.npz.

The reference runtime is face-api 1.7.15 itself on pure-JS TensorFlow.js 4.22.0 (the version
its build pins, `dist/tfjs.version.js`), CPU backend, in Node. One-time setup, outside the
repository (nothing is installed into it):
    mkdir -p /work/scratch/faceapi-golden && cd /work/scratch/faceapi-golden
    echo '{"name": "faceapi-golden", "private": true, "type": "module"}' > package.json
    npm pack @vladmandic/face-api@1.7.15      # sha256 0d77fffe...09b031 (the pinned tarball)
    npm install @tensorflow/tfjs@4.22.0 @tensorflow/tfjs-backend-wasm@4.22.0 \\
        ./vladmandic-face-api-1.7.15.tgz
(face-api's node-wasm build `require`s the wasm backend; we select 'cpu'.) Then, from the
repository root, with the package's venv:
    python scripts/make_golden_faceapi.py [--node_project /work/scratch/faceapi-golden]
It writes the inputs, runs scripts/make_golden_faceapi.mjs with Node on the pinned weights from
the cache (`assets.asset_path`), checks there that face-api's public API (predictAgeAndGender,
predictExpressions, computeFaceDescriptor) reports the same numbers, and saves:
  faceapi_native112.npz  x [N, 112, 112, 3] uint8 RGB (already the nets' size: no resize):
      age [N], gender_probs/gender_logits [N, 2] (male, female), expression_probs/_logits [N, 7]
  faceapi_native150.npz  x [N, 150, 150, 3] uint8: descriptors [N, 128]
  faceapi_full.npz       x_0, x_1, ... of other sizes (face-api pads, resizes): all of the above
Inputs: crops of scikit-image's astronaut photo (a real face; mirrored and shifted ones for the
same-person check) and uniform noise, seeded.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
GOLDEN = os.path.join(HERE, "..", "tests", "golden")


def _resize(img: np.ndarray, h: int, w: int) -> np.ndarray:
    from skimage.transform import resize
    r = resize(img.astype(np.float64), (h, w), order=1, anti_aliasing=True, preserve_range=True)
    return np.clip(np.round(r), 0, 255).astype(np.uint8)


def inputs() -> dict[str, list[np.ndarray]]:
    from skimage import data
    a = data.astronaut()                       # 512 x 512 RGB, face ~ rows 55:195, cols 165:285
    rng = np.random.default_rng(20240612)
    face = a[40:200, 145:305]
    return {
        "native112": [_resize(face, 112, 112),
                      _resize(a[10:230, 115:335], 112, 112)[:, ::-1],   # loose, mirrored
                      rng.integers(0, 256, (112, 112, 3), dtype=np.uint8),
                      np.clip(128 + 50 * rng.standard_normal((112, 112, 3)), 0, 255)
                      .astype(np.uint8)],
        "native150": [_resize(face, 150, 150),
                      _resize(a[30:210, 140:320], 150, 150)[:, ::-1],   # same person, shifted
                      _resize(data.chelsea()[0:300, 100:400], 150, 150),  # not a person
                      rng.integers(0, 256, (150, 150, 3), dtype=np.uint8)],
        "full": [_resize(a[30:240, 150:304], 131, 96),   # taller than wide: pad columns
                 rng.integers(0, 256, (40, 57, 3), dtype=np.uint8)],   # wider, upsampled
    }


NETS = {"native112": ("age_gender", "expression"), "native150": ("recognition",),
        "full": ("age_gender", "expression", "recognition")}


def run_node(node_project: str, groups: dict[str, list[np.ndarray]]) -> dict[str, np.ndarray]:
    sys.path.insert(0, os.path.join(HERE, ".."))
    from tlgan_jax.weights import pinned as assets
    spec = assets.NPM_PACKAGES["@vladmandic/face-api"]
    model_dir = os.path.dirname(assets.asset_path(spec.name, spec.members[0]))
    for m in spec.members:
        assets.asset_path(spec.name, m)
    with tempfile.TemporaryDirectory() as io:
        blob, desc = bytearray(), {}
        for g, imgs in groups.items():
            desc[g] = []
            for img in imgs:
                desc[g].append({"shape": list(img.shape), "offset": len(blob)})
                blob += np.ascontiguousarray(img, np.uint8).tobytes()
        with open(os.path.join(io, "inputs.bin"), "wb") as f:
            f.write(blob)
        with open(os.path.join(io, "inputs.json"), "w") as f:
            json.dump({"groups": desc, "nets": NETS}, f)
        subprocess.run(["node", os.path.join(HERE, "make_golden_faceapi.mjs"), node_project,
                        model_dir, io], check=True)
        meta = json.load(open(os.path.join(io, "outputs.json")))
        raw = open(os.path.join(io, "outputs.bin"), "rb").read()
    print("reference:", meta["versions"])
    return {k: np.frombuffer(raw, "<f4", int(np.prod(v["shape"])), v["offset"])
            .reshape(v["shape"]).copy() for k, v in meta["outputs"].items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--node_project", default="/work/scratch/faceapi-golden")
    args = ap.parse_args()
    groups = inputs()
    out = run_node(args.node_project, groups)
    for g, imgs in groups.items():
        arrays = {k.split("/", 1)[1]: v for k, v in out.items() if k.startswith(g + "/")}
        if g == "full":
            arrays |= {f"x_{i}": img for i, img in enumerate(imgs)}
        else:
            arrays["x"] = np.stack(imgs)
        path = os.path.join(GOLDEN, f"faceapi_{g}.npz")
        np.savez_compressed(path, **arrays)
        print(path, {k: v.shape for k, v in arrays.items()}, os.path.getsize(path), "bytes")


if __name__ == "__main__":
    main()
