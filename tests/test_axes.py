"""Axes: access, TL-GAN's lock (disentangle), InterFaceGAN's conditional direction, axes.npz."""
import json

import numpy as np
import pytest

from tlgan_jax.axes import Axes, conditional_direction


def random_axes(seed=0, d=16, names=("smile", "male", "age", "glasses", "beard"), corr=0.5):
    """Unit axes with substantial pairwise correlation (a shared component)."""
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(d, len(names))) + corr * rng.normal(size=(d, 1)) * 3
    return Axes.from_vectors(v, names, method="ols", metadata={"generator": "toy", "latent_dim": d},
                             diagnostics={n: {"r2": 0.5, "auc": float("nan")} for n in names})


def tlgan_reference(feature_axis, idx_base, idx_target=None):
    """TL-GAN's disentangle_feature_axis_by_idx, transcribed from its loops (float64)."""
    def orth_one(v, b):
        return v - np.dot(v, b) / np.dot(b, b) * b
    fa = np.array(feature_axis, np.float64)
    if idx_target is None:
        idx_target = np.setdiff1d(np.arange(fa.shape[1]), idx_base)
    base = fa[:, idx_base].copy()
    for i in range(base.shape[1]):
        for j in range(i):
            base[:, i] = orth_one(base[:, i], base[:, j])
    target = fa[:, idx_target].copy()
    for i in range(target.shape[1]):
        for j in range(base.shape[1]):
            target[:, i] = orth_one(target[:, i], base[:, j])
    out = fa.copy()
    out[:, idx_target] = target
    out[:, idx_base] = base
    return out / np.linalg.norm(out, axis=0, keepdims=True)


def test_access_select_and_validation():
    ax = random_axes()
    assert ax.latent_dim == 16 and len(ax) == 5 and "age" in ax and list(ax) == list(ax.names)
    np.testing.assert_array_equal(np.asarray(ax["age"]), np.asarray(ax.directions)[:, 2])
    sub = ax.select(["glasses", "smile"])
    assert sub.names == ("glasses", "smile") and set(sub.diagnostics) == {"glasses", "smile"}
    np.testing.assert_array_equal(np.asarray(sub["smile"]), np.asarray(ax["smile"]))
    with pytest.raises(KeyError, match="unknown axis 'hat'"):
        ax["hat"]
    with pytest.raises(ValueError, match=r"select: unknown axis name\(s\) \['hat'\]"):
        ax.select(["hat"])
    c = ax.cosines()
    np.testing.assert_allclose(np.diag(c), 1.0, atol=1e-6)
    assert np.abs(c - np.eye(5)).max() > 0.3                    # the axes are correlated
    d = np.asarray(ax.directions)
    with pytest.raises(ValueError, match="2 names for 5 directions"):
        Axes(d, ("a", "b"))
    with pytest.raises(ValueError, match=r"names must be unique, repeated: \['a'\]"):
        Axes(d, ("a", "a", "b", "c", "e"))
    with pytest.raises(ValueError, match=r"must be unit vectors; not unit: \['b'\]"):
        Axes(d * np.array([1, 2, 1, 1, 1]), tuple("abcde"))
    with pytest.raises(ValueError, match="NaN"):
        Axes(np.full((4, 1), np.nan), ("a",))
    with pytest.raises(ValueError, match=r"shape \[latent_dim, k\]"):
        Axes(d[:, 0], ("a",))
    with pytest.raises(ValueError, match="finite and non-zero"):
        Axes.from_vectors(np.zeros((4, 1)), ("a",))


def test_disentangle_matches_tlgan_and_its_properties():
    ax = random_axes(1)
    lock = ["male", "age"]
    out = ax.disentangle(lock=lock)
    d = np.asarray(out.directions, np.float64)
    ref = tlgan_reference(np.asarray(ax.directions), [1, 2])
    np.testing.assert_allclose(d, ref, atol=2e-6)
    np.testing.assert_allclose(np.linalg.norm(d, axis=0), 1.0, atol=1e-6)       # unit norm
    locked = d[:, [1, 2]]
    others = d[:, [0, 3, 4]]
    np.testing.assert_allclose(locked.T @ others, 0.0, atol=1e-6)              # ⟂ locked span
    assert abs(locked[:, 0] @ locked[:, 1]) < 1e-6                              # locked: G-S
    np.testing.assert_allclose(out["male"], ax["male"], atol=1e-6)             # first lock kept
    # idempotent
    again = out.disentangle(lock=lock)
    np.testing.assert_allclose(np.asarray(again.directions), d, atol=1e-6)
    # metadata records what was done; the input is unchanged
    assert out.metadata["derived"][-1] == {"op": "disentangle", "lock": lock,
                                           "target": ["smile", "glasses", "beard"]}
    assert "derived" not in ax.metadata
    # an explicit target moves only that axis
    only = ax.disentangle(lock=["male"], target=["smile"])
    np.testing.assert_allclose(np.asarray(only["glasses"]), np.asarray(ax["glasses"]))
    np.testing.assert_allclose(np.asarray(only.directions),
                               tlgan_reference(np.asarray(ax.directions), [1], [0]), atol=2e-6)
    assert ax.disentangle(lock=[]) is ax


def test_disentangle_depends_on_lock_order_but_targets_do_not():
    ax = random_axes(2)
    ab = ax.disentangle(lock=["male", "age"])
    ba = ax.disentangle(lock=["age", "male"])
    # locked axes: the first one listed is kept, the second loses its component along it
    np.testing.assert_allclose(ab["male"], ax["male"], atol=1e-6)
    np.testing.assert_allclose(ba["age"], ax["age"], atol=1e-6)
    assert np.abs(np.asarray(ab["male"]) - np.asarray(ba["male"])).max() > 0.05
    assert np.abs(np.asarray(ab["age"]) - np.asarray(ba["age"])).max() > 0.05
    # targets depend only on the locked span
    for name in ("smile", "glasses", "beard"):
        np.testing.assert_allclose(ab[name], ba[name], atol=1e-5)


def test_conditional_direction_equals_lock_for_targets():
    ax = random_axes(3)
    d = np.asarray(ax.directions, np.float64)
    # one condition: InterFaceGAN's n − (n·c) c for unit c, and TL-GAN's lock
    one = ax.conditional("smile", ["male"])
    expected = d[:, 0] - (d[:, 0] @ d[:, 1]) * d[:, 1]
    np.testing.assert_allclose(one["smile"], expected / np.linalg.norm(expected), atol=1e-6)
    np.testing.assert_allclose(one["smile"], ax.disentangle(lock=["male"])["smile"], atol=1e-6)
    np.testing.assert_allclose(one["male"], ax["male"])                         # others unchanged
    # several (non-orthogonal, non-unit) conditions: the projection on span(C)'s complement
    c = (d[:, [1, 2, 3]] * np.array([2.0, 0.5, 1.0])).T
    n2 = np.asarray(conditional_direction(d[:, 0], c), np.float64)
    np.testing.assert_allclose(c @ n2, 0.0, atol=1e-5)
    assert np.linalg.norm(n2) == pytest.approx(1.0, abs=1e-6)
    resid = d[:, 0] - c.T @ np.linalg.lstsq(c.T, d[:, 0], rcond=None)[0]
    np.testing.assert_allclose(n2, resid / np.linalg.norm(resid), atol=1e-5)
    # ... which is what TL-GAN's lock does to a target, in any lock order
    for lock in (["male", "age", "glasses"], ["glasses", "male", "age"]):
        np.testing.assert_allclose(ax.disentangle(lock=lock)["smile"], n2, atol=1e-5)
    np.testing.assert_allclose(ax.conditional("smile", ["male", "age", "glasses"])["smile"], n2,
                               atol=1e-5)


def test_lock_and_condition_errors():
    ax = random_axes(4)
    with pytest.raises(ValueError, match=r"disentangle lock: unknown axis name\(s\) \['hat'\]"):
        ax.disentangle(lock=["male", "hat"])
    with pytest.raises(ValueError, match=r"repeated axis name\(s\) \['male'\]"):
        ax.disentangle(lock=["male", "male"])
    with pytest.raises(ValueError, match=r"axes \['male'\] are both locked and targets"):
        ax.disentangle(lock=["male"], target=["male", "smile"])
    with pytest.raises(ValueError, match="cannot be its own condition"):
        ax.conditional("smile", ["smile"])
    with pytest.raises(ValueError, match=r"conditional conditions: unknown axis name\(s\)"):
        ax.conditional("smile", ["hat"])
    d = np.asarray(ax.directions)
    dup = Axes.from_vectors(np.c_[d[:, :2], d[:, 0] + d[:, 1]], ("a", "b", "ab"))
    with pytest.raises(ValueError, match="locked axis 'ab' lies in the span"):
        dup.disentangle(lock=["a", "b", "ab"])
    with pytest.raises(ValueError, match="axis 'ab' lies in the span of the locked axes"):
        dup.disentangle(lock=["a", "b"])
    with pytest.raises(ValueError, match="linearly dependent"):
        conditional_direction(d[:, 0], np.stack([d[:, 1], d[:, 1] * 2]))
    with pytest.raises(ValueError, match=r"need n \[d\] and conditions \[m, d\]"):
        conditional_direction(d[:, 0], d[:, 1])


def test_save_load_round_trip(tmp_path):
    ax = random_axes(5).with_metadata(extractors=["gender", "age"], num_samples=1000, seed=3)
    path = ax.save(tmp_path / "axes.npz")
    assert path == tmp_path / "axes.npz" and path.exists()
    with np.load(path, allow_pickle=False) as f:                  # portable: no pickled objects
        assert {"directions", "names", "method", "metadata", "diagnostics"} <= set(f.files)
        assert f["directions"].shape == (16, 5) and f["names"].dtype.kind == "U"
        meta = json.loads(str(f["metadata"]))
    assert meta["generator"] == "toy" and meta["extractors"] == ["gender", "age"]
    back = Axes.load(path)
    np.testing.assert_array_equal(np.asarray(back.directions), np.asarray(ax.directions))
    assert back.names == ax.names and back.method == "ols"
    assert back.metadata == {"generator": "toy", "latent_dim": 16, "extractors": ["gender", "age"],
                             "num_samples": 1000, "seed": 3}
    assert back.diagnostics["smile"] == {"r2": 0.5, "auc": None}  # NaN is stored as null
    # a path without .npz is written as given
    other = ax.save(tmp_path / "axes_file")
    assert other.name == "axes_file" and Axes.load(other).names == ax.names
    Axes.load(path, latent_dim=16)


def test_latent_size_checks_and_bad_files(tmp_path):
    ax = Axes.from_vectors(np.random.default_rng(0).normal(size=(100, 2)), ("a", "b"),
                           metadata={"generator": "dcgan"})
    path = ax.save(tmp_path / "axes.npz")
    msg = "axes were fitted for latent size 100 but generator pggan has latent size 512"
    with pytest.raises(ValueError, match=msg):
        ax.check_latent_dim(512, "pggan")
    with pytest.raises(ValueError, match=msg):
        Axes.load(path, latent_dim=512, generator="pggan")

    class Gen:
        name, latent_dim = "pggan", 512
    with pytest.raises(ValueError, match=msg):
        ax.check_generator(Gen())
    ax.check_latent_dim(100)

    good = {"directions": np.asarray(ax.directions), "names": np.array(["a", "b"]),
            "method": np.array("ols"), "metadata": np.array("{}"), "diagnostics": np.array("{}")}

    def write(name, **changes):
        p = tmp_path / name
        with open(p, "wb") as f:
            np.savez(f, **{**good, **changes})
        return p
    with pytest.raises(ValueError, match=r"3 names for 2 directions"):
        Axes.load(write("names.npz", names=np.array(["a", "b", "c"])))
    with pytest.raises(ValueError, match=r"missing key\(s\) \['directions'\]"):
        p = tmp_path / "nodir.npz"
        with open(p, "wb") as f:
            np.savez(f, **{k: v for k, v in good.items() if k != "directions"})
        Axes.load(p)
    with pytest.raises(ValueError, match="not a portable axes file"):
        Axes.load(write("pickled.npz", metadata=np.array([{"x": 1}], dtype=object)))
    with pytest.raises(ValueError, match="not valid JSON"):
        Axes.load(write("json.npz", metadata=np.array("{not json")))
    with pytest.raises(ValueError, match=r"huge\.npz: metadata is not valid JSON"):
        Axes.load(write("huge.npz", metadata=np.array('{"x": ' + "9" * 5000 + "}")))
    with pytest.raises(ValueError, match="unit vectors"):
        Axes.load(write("scaled.npz", directions=good["directions"] * 3))
    with pytest.raises(ValueError, match="unsupported axes file format"):
        Axes.load(write("fmt.npz", format=np.array("other/9")))
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="junk.npz"):
        Axes.load(tmp_path / "junk.npz")
    with pytest.raises(ValueError, match="not JSON-serialisable"):
        ax.with_metadata(bad=object()).save(tmp_path / "bad.npz")


def _lstsq_residual(v, basis):
    """v minus its least-squares projection on the columns of `basis` (rank-deficient fine)."""
    if basis.shape[1] == 0:
        return v / np.linalg.norm(v)
    r = v - basis @ np.linalg.lstsq(basis, v, rcond=1e-6)[0]     # rank to float32 noise
    return r / np.linalg.norm(r)


@pytest.mark.parametrize("case", ["random", "collinear", "dependent"])
def test_the_three_lock_call_sites_agree(case):
    """Axes.disentangle, the editor's jitted masked lock and orthogonal_to_others are one lock:
    same directions on random axes, and the same verdict on collinear / dependent ones."""
    import itertools

    import jax

    from tlgan_jax.axes import locked_directions, orthogonal_to_others
    rng = np.random.default_rng({"random": 0, "collinear": 1, "dependent": 2}[case])
    v = rng.normal(size=(7, 5)) + 2.0 * rng.normal(size=(7, 1))          # far from orthogonal
    if case == "collinear":
        v[:, 3] = -2.0 * v[:, 1]                                        # c3 ∥ c1
    elif case == "dependent":
        v[:, 4] = v[:, 0] + 0.5 * v[:, 2]                               # c4 ∈ span(c0, c2)
    names = [f"a{i}" for i in range(5)]
    axes = Axes.from_vectors(v, names)
    d64 = np.asarray(axes.directions, np.float64)
    jitted = jax.jit(locked_directions)
    for m in range(6):
        for lock in itertools.combinations(range(5), m):
            mask = np.isin(np.arange(5), lock)
            got, ok = jitted(axes.directions, mask)
            ok = np.asarray(ok)
            try:
                want = axes.disentangle(lock=[names[i] for i in lock]).directions
            except ValueError:
                assert not ok.all(), lock
                continue
            assert ok.all(), lock
            np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=2e-5)
            np.testing.assert_allclose(np.asarray(want),
                                       tlgan_reference(d64, list(lock)), atol=2e-5)
    # each axis against all the others: the float64 residual of a least-squares fit
    others = orthogonal_to_others(axes, strict=False)
    for i in range(5):
        rest = np.delete(d64, i, axis=1)
        in_span = np.linalg.matrix_rank(np.c_[rest, d64[:, i]], tol=1e-6) == \
            np.linalg.matrix_rank(rest, tol=1e-6)
        assert np.isnan(others[:, i]).all() == in_span, i
        if not in_span:
            np.testing.assert_allclose(others[:, i], _lstsq_residual(d64[:, i], rest), atol=1e-5)
            lock = [n for n in names if n != names[i]]
            try:            # where the others are independent, it is TL-GAN's lock of them all
                np.testing.assert_allclose(
                    others[:, i], np.asarray(axes.disentangle(lock=lock)[names[i]]), atol=2e-5)
            except ValueError:
                assert np.linalg.matrix_rank(rest, tol=1e-6) < rest.shape[1]
