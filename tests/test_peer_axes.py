"""InterFaceGAN boundaries and TL-GAN feature-direction pickles as Axes: files written the way
each tool writes them, round trips, and refusal of hostile or malformed files."""
import pickle

import numpy as np
import pytest
from hostile import SystemCall

from tlgan_jax.axes import Axes
from tlgan_jax.weights.peer_axes import PeerAxesError, read_interfacegan_boundary
from tlgan_jax.weights.safe_pickle import CorruptPickleError, UnsafePickleError


def _unit_columns(d, k, seed=0):
    v = np.random.default_rng(seed).standard_normal((d, k))
    return v / np.linalg.norm(v, axis=0)


def test_interfacegan_boundaries_as_written_by_interfacegan(tmp_path):
    """InterFaceGAN's train_boundary: coef.reshape(1, d).astype(float32), divided by its norm,
    then np.save(OUTPUT_DIR/boundary.npy); one file per attribute."""
    coef = np.random.default_rng(1).standard_normal((2, 512))
    for name, c in zip(("stylegan_ffhq_age_w", "stylegan_ffhq_gender_w"), coef):
        boundary = c.reshape(1, 512).astype(np.float32)
        np.save(tmp_path / f"{name}_boundary.npy", boundary / np.linalg.norm(boundary))
    files = sorted(tmp_path.glob("*_boundary.npy"))
    axes = Axes.from_interfacegan(files, latent_space="w")
    assert axes.names == ("stylegan_ffhq_age_w", "stylegan_ffhq_gender_w")
    assert axes.latent_space == "w" and axes.latent_dim == 512 and axes.method == "interfacegan"
    np.testing.assert_allclose(np.asarray(axes.directions).T,
                               coef / np.linalg.norm(coef, axis=1, keepdims=True), atol=1e-6)
    named = Axes.from_interfacegan({"age": files[0]})
    assert named.names == ("age",) and named.latent_space == "z"


def test_interfacegan_round_trip(tmp_path):
    axes = Axes(_unit_columns(64, 3), ("male", "age", "smile/open"))
    paths = axes.save_interfacegan(tmp_path / "b", prefix="sg2_")
    assert [p.name for p in paths] == ["sg2_male_boundary.npy", "sg2_age_boundary.npy",
                                       "sg2_smile_open_boundary.npy"]
    raw = np.load(paths[0], allow_pickle=False)
    assert raw.shape == (1, 64) and raw.dtype == np.float32      # InterFaceGAN's layout
    again = Axes.from_interfacegan({n: p for n, p in zip(axes.names, paths)})
    np.testing.assert_allclose(again.directions, axes.directions, atol=1e-7)


def test_tlgan_pickle_as_written_by_tlgan(tmp_path):
    """TL-GAN's script_label_regression: pickle.dump({'direction': feature_direction
    [512, 40] float64, 'name': y_name (a list)}, f) with Python 3's default protocol."""
    direction = np.random.default_rng(2).standard_normal((512, 40))
    direction /= np.linalg.norm(direction, axis=0)
    names = [f"attr_{i}" for i in range(40)]
    path = tmp_path / "feature_direction_20180101_000000.pkl"
    with open(path, "wb") as f:
        pickle.dump({"direction": direction, "name": names}, f)
    axes = Axes.from_tlgan(path)
    assert axes.names == tuple(names) and axes.latent_space == "z" and axes.method == "tlgan"
    np.testing.assert_allclose(axes.directions, direction, atol=1e-6)


def test_tlgan_round_trip_readable_by_plain_pickle_with_numpy1_names(tmp_path):
    axes = Axes(_unit_columns(32, 2), ("male", "age"))
    path = axes.save_tlgan(tmp_path / "feature_direction.pkl")
    data = path.read_bytes()
    assert b"numpy.core.multiarray\n_reconstruct" in data and b"numpy._core" not in data
    with open(path, "rb") as f:                 # what TL-GAN's own scripts do
        loaded = pickle.load(f)
    assert loaded["name"] == ["male", "age"] and loaded["direction"].shape == (32, 2)
    assert loaded["direction"].dtype == np.float64
    again = Axes.from_tlgan(path)
    np.testing.assert_allclose(again.directions, axes.directions, atol=1e-7)
    with pytest.raises(ValueError, match="TL-GAN's directions live in z; these axes are in w"):
        axes.with_metadata(latent_space="w").save_tlgan(tmp_path / "w.pkl")


def test_hostile_and_malformed_tlgan_pickles(tmp_path):
    marker = tmp_path / "pwned"
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(pickle.dumps({"direction": SystemCall(f"touch {marker}"), "name": ["a"]}))
    with pytest.raises(UnsafePickleError, match="system"):
        Axes.from_tlgan(bad)
    assert not marker.exists()
    cases = [({"direction": np.zeros((4, 2)), "nom": ["a", "b"]}, "expected TL-GAN's dict"),
             ([1, 2], "expected TL-GAN's dict"),
             ({"direction": np.zeros((4, 2), np.int64), "name": ["a", "b"]}, "float array"),
             ({"direction": np.ones((4, 2)), "name": ["a"]}, "1 names for 2 direction columns"),
             ({"direction": np.ones((4, 2)), "name": "ab"}, "'name' must be a list of strings"),
             ({"direction": np.zeros((4, 2)), "name": ["a", "b"]}, "non-zero")]
    for obj, message in cases:
        bad.write_bytes(pickle.dumps(obj))
        with pytest.raises(ValueError, match=message):
            Axes.from_tlgan(bad)
    bad.write_bytes(pickle.dumps({"direction": np.ones((4, 2)), "name": ["a", "b"]})[:40])
    with pytest.raises(CorruptPickleError):
        Axes.from_tlgan(bad)
    with pytest.raises(FileNotFoundError, match="no such TL-GAN feature-direction pickle"):
        Axes.from_tlgan(tmp_path / "missing.pkl")
    with pytest.raises(PeerAxesError, match="not a regular file"):
        Axes.from_tlgan(tmp_path)


def test_malformed_boundaries(tmp_path):
    p = tmp_path / "x_boundary.npy"
    np.save(p, np.ones((2, 8), np.float32))
    with pytest.raises(PeerAxesError,
                       match=r"shape \[1, d\], got dtype float32 and shape \(2, 8\)"):
        read_interfacegan_boundary(p)
    np.save(p, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(PeerAxesError, match="expected a float array"):
        read_interfacegan_boundary(p)
    np.save(p, np.ones((1, 8), np.float32))
    data = p.read_bytes()
    p.write_bytes(data[:-4])
    with pytest.raises(PeerAxesError, match="truncated or corrupt"):
        read_interfacegan_boundary(p)
    # a header that declares 4 GB in a 100-byte file: refused before any allocation
    with open(p, "wb") as f:
        np.lib.format.write_array_header_1_0(
            f, {"descr": "<f4", "fortran_order": False, "shape": (1, 10 ** 9)})
        f.write(b"\0" * 32)
    with pytest.raises(PeerAxesError, match=r"declares \(1, 1000000000\) float32 but the file "
                                            r"holds 32 data bytes"):
        read_interfacegan_boundary(p)
    p.write_bytes(data.replace(b"'shape': (1, 8)", b"'shape': (1, 9**9)"))
    with pytest.raises(PeerAxesError, match="not an InterFaceGAN boundary"):
        read_interfacegan_boundary(p)
    np.save(p, np.zeros((1, 8), np.float32))
    with pytest.raises(PeerAxesError, match="zero or not finite"):
        read_interfacegan_boundary(p)
    p.write_bytes(b"not a numpy file at all")
    with pytest.raises(PeerAxesError, match="not an InterFaceGAN boundary"):
        read_interfacegan_boundary(p)
    np.save(tmp_path / "a_boundary.npy", np.ones((1, 8), np.float32))
    np.save(tmp_path / "b_boundary.npy", np.ones((1, 9), np.float32))
    with pytest.raises(ValueError, match=r"different sizes \[8, 9\]"):
        Axes.from_interfacegan([tmp_path / "a_boundary.npy", tmp_path / "b_boundary.npy"])
