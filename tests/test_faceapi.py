"""face-api ports vs face-api 1.7.15 on tfjs 4.22.0 (CPU backend, Node): golden vectors from
scripts/make_golden_faceapi.py; plus the tfjs weights reader's checks and the extractors."""
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tlgan_jax.extractors import (
    descriptor_distance,
    identity_kept,
    load_extractor,
    load_face_descriptor,
)
from tlgan_jax.extractors import faceapi as fa
from tlgan_jax.weights.tfjs import TfjsFormatError, read_tfjs_weights

from helpers import PARITY_TOL, rel_error

GOLDEN = Path(__file__).parent / "golden"


@pytest.fixture(scope="module")
def nets():
    """The real pinned weights (npm tarball -> cache), through the registry's loaders."""
    return {"age_gender": load_extractor("fa_age_gender"),
            "expression": load_extractor("fa_expression"),
            "recognition": load_face_descriptor("faceapi")}


@pytest.fixture(autouse=True)
def highest_precision():
    with jax.default_matmul_precision("highest"):
        yield


def _check(ours, ref, what):
    err = rel_error(ours, ref)
    assert err <= PARITY_TOL, f"{what}: rel. error {err:.2e} > {PARITY_TOL}"


def test_age_gender_and_expression_match_faceapi_on_native_112_inputs(nets):
    g = np.load(GOLDEN / "faceapi_native112.npz")
    x = fa.preprocess(g["x"], fa.AGE_GENDER_SIZE)
    age, logits = fa.age_gender_logits(nets["age_gender"].params, x)
    _check(age, g["age"], "age")
    _check(logits, g["gender_logits"], "gender logits")
    _check(nets["age_gender"].raw(x)[:, 1:], g["gender_probs"], "gender probabilities")
    p = nets["expression"].params
    _check(fa.expression_logits(p, x), g["expression_logits"], "expression logits")
    _check(nets["expression"].raw(x), g["expression_probs"], "expression probabilities")


def test_descriptors_match_faceapi_on_native_150_inputs(nets):
    g = np.load(GOLDEN / "faceapi_native150.npz")
    d = nets["recognition"].raw(fa.preprocess(g["x"], fa.RECOGNITION_SIZE))
    assert d.shape == (4, 128)
    _check(d, g["descriptors"], "descriptors")


def test_full_preprocessing_from_arbitrary_sizes_matches_faceapi(nets):
    """Non-square images of other sizes: face-api pads to a square (centred, JS rounding) and
    resizes with tfjs resizeBilinear; our extractors do the same from [-1, 1] images."""
    g = np.load(GOLDEN / "faceapi_full.npz")
    for i in range(2):
        img = g[f"x_{i}"][None].astype(np.float32)
        assert img.shape[1] != img.shape[2] and img.shape[1:3] != (112, 112)
        images = img / 127.5 - 1.0                           # generator convention
        s = nets["age_gender"](images)
        _check(s["fa_age"], g["age"][i:i + 1], f"image {i} age")
        logit = np.log(g["gender_probs"][i, 0]) - np.log(g["gender_probs"][i, 1])
        _check(s["fa_male"], [logit], f"image {i} male logit")
        e = nets["expression"](images)
        ours = np.stack([e[a] for a in nets["expression"].attributes], 1)
        _check(ours, np.log(g["expression_probs"][i:i + 1]), f"image {i} expression log-probs")
        _check(nets["recognition"](images), g["descriptors"][i:i + 1], f"image {i} descriptor")
        # the 0..255 path directly, against the pre-softmax values
        x = fa.preprocess(img, fa.AGE_GENDER_SIZE)
        _check(fa.age_gender_logits(nets["age_gender"].params, x)[1], g["gender_logits"][i:i + 1],
               f"image {i} gender logits")
        _check(fa.expression_logits(nets["expression"].params, x),
               g["expression_logits"][i:i + 1], f"image {i} expression logits")


def test_extractor_names_and_kinds(nets):
    assert nets["age_gender"].attributes == ("fa_male", "fa_age")
    assert nets["age_gender"].binary == (True, False)
    assert nets["expression"].attributes == (
        "fa_neutral", "fa_happy", "fa_sad", "fa_angry", "fa_fearful", "fa_disgusted",
        "fa_surprised")
    s = nets["expression"](jnp.zeros((2, 64, 64, 3)))
    total = sum(np.exp(np.asarray(v)) for v in s.values())
    np.testing.assert_allclose(total, 1.0, rtol=1e-5)   # natural-log probabilities


def test_identity_threshold_on_the_golden_descriptors(nets):
    """Astronaut face vs the same face shifted and mirrored: same person (< 0.6, as face-api
    computes it); vs noise: not."""
    d = np.load(GOLDEN / "faceapi_native150.npz")["descriptors"]
    want = np.linalg.norm(d[0] - d[1:], axis=1)
    np.testing.assert_allclose(descriptor_distance(d[0], d[1:]), want, rtol=1e-6)
    assert want[0] < 0.6 < want[2]
    desc = nets["recognition"]
    assert desc.threshold == 0.6 and desc.dim == 128
    assert list(np.asarray(desc.same_person(d[:1], d[1:]))) == list(want < 0.6)
    assert list(np.asarray(identity_kept(d[0], d[1:], 0.55))) == [False, False, False]


def test_pad_to_square_is_centred_with_js_rounding():
    """d = 5 missing columns: Math.round(2.5) = 3 after the image, 2 before."""
    x = jnp.ones((1, 8, 3, 1))
    p = np.asarray(fa._pad_centred(x))[0, 0, :, 0]
    assert list(p) == [0, 0, 1, 1, 1, 0, 0, 0]
    y = np.asarray(fa._pad_centred(jnp.ones((1, 2, 5, 1))))[0, :, 0, 0]
    assert list(y) == [0, 1, 1, 0, 0]


def test_bilinear_resize_follows_tfjs_without_half_pixel_centres():
    """4 -> 3 samples at src = 0, 4/3, 8/3: v0, v1 + (v2 - v1)/3, v2 + 2(v3 - v2)/3."""
    v = jnp.asarray([0.0, 3.0, 9.0, 12.0]).reshape(1, 4, 1, 1)
    out = np.asarray(fa.resize_bilinear_tfjs(jnp.tile(v, (1, 1, 4, 1)), 3))[0, :, 0, 0]
    np.testing.assert_allclose(out, [0.0, 5.0, 11.0], rtol=1e-6)


# ----------------------------------------------------------------------------- tfjs reader

def _manifest(tmp_path, weights, data: bytes, paths=("w.bin",)):
    (tmp_path / "w.bin").write_bytes(data)
    m = tmp_path / "m.json"
    m.write_text(json.dumps([{"paths": list(paths), "weights": weights}]))
    return m


def test_reader_dequantises_uint8_and_reads_float32(tmp_path):
    weights = [{"name": "a/q", "shape": [3], "dtype": "float32",
                "quantization": {"dtype": "uint8", "scale": 0.5, "min": -1.0}},
               {"name": "b", "shape": [1, 2], "dtype": "float32"}]
    data = bytes([0, 1, 255]) + np.asarray([1.5, -2.0], "<f4").tobytes()
    w = read_tfjs_weights(_manifest(tmp_path, weights, data))
    np.testing.assert_array_equal(w["a/q"], [-1.0, -0.5, 126.5])
    np.testing.assert_array_equal(w["b"], [[1.5, -2.0]])
    assert w["a/q"].dtype == np.float32


@pytest.mark.parametrize("weights,data,match", [
    ([{"name": "a", "shape": [4], "dtype": "float32"}], b"\0" * 12, "need 16 bytes.*hold 12"),
    ([{"name": "a", "shape": [2], "dtype": "float32"}], b"\0" * 12, "need 8 bytes.*hold 12"),
    ([{"name": "a", "shape": [3], "dtype": "int32"}], b"\0" * 12, "dtype 'int32' is not"),
    ([{"name": "a", "shape": [-3], "dtype": "float32"}], b"", "negative, huge"),
    ([{"name": "a", "shape": [1 << 20, 1 << 20], "dtype": "float32"}], b"", "more than"),
    ([{"name": "a", "shape": [3], "dtype": "float32",
       "quantization": {"dtype": "int4", "scale": 1, "min": 0}}], b"\0" * 3, "not supported"),
    ([{"name": "a", "shape": [3], "dtype": "float32",
       "quantization": {"dtype": "uint8", "scale": float("nan"), "min": 0}}], b"\0" * 3,
     "finite numbers"),
    ([{"name": "a", "shape": [1], "dtype": "float32"},
      {"name": "a", "shape": [1], "dtype": "float32"}], b"\0" * 8, "appears twice"),
])
def test_reader_refuses_malformed_manifests(tmp_path, weights, data, match):
    with pytest.raises(TfjsFormatError, match=match):
        read_tfjs_weights(_manifest(tmp_path, weights, data))


@pytest.mark.parametrize("text", [b"[" * 100000 + b"]" * 100000, b'[{"a": ' + b"9" * 5000 + b"}]",
                                  b"\xff\xfe[]"])
def test_reader_refuses_manifests_json_cannot_hold(tmp_path, text):
    (tmp_path / "m.json").write_bytes(text)
    with pytest.raises(TfjsFormatError, match="m.json: not a JSON weights manifest"):
        read_tfjs_weights(tmp_path / "m.json")


@pytest.mark.parametrize("path", ["../w.bin", "/etc/passwd", "sub/w.bin", "..", "missing.bin"])
def test_reader_refuses_shards_outside_the_model_dir(tmp_path, path):
    d = tmp_path / "model"
    d.mkdir()
    m = _manifest(d, [{"name": "a", "shape": [1], "dtype": "float32"}], b"\0" * 4, (path,))
    (tmp_path / "w.bin").write_bytes(b"\0" * 4)
    with pytest.raises(TfjsFormatError, match="plain file name|missing or not a regular"):
        read_tfjs_weights(m)


def test_reader_refuses_a_symlinked_shard(tmp_path):
    (tmp_path / "elsewhere.bin").write_bytes(b"\0" * 4)
    d = tmp_path / "model"
    d.mkdir()
    (d / "m.json").write_text(json.dumps(
        [{"paths": ["w.bin"], "weights": [{"name": "a", "shape": [1], "dtype": "float32"}]}]))
    (d / "w.bin").symlink_to(tmp_path / "elsewhere.bin")
    with pytest.raises(TfjsFormatError, match="not a regular file"):
        read_tfjs_weights(d / "m.json")


def test_conversion_refuses_other_weights():
    w = {k: np.zeros(s, np.float32) for k, s in fa.expression_shapes().items()}
    with pytest.raises(fa.UnsupportedWeightsError, match="missing"):
        fa.params_from_weights(w, fa.age_gender_shapes())
    w["fc/weights"] = np.zeros((256, 8), np.float32)
    with pytest.raises(fa.UnsupportedWeightsError, match="fc/weights.*expected"):
        fa.params_from_weights(w, fa.expression_shapes())
