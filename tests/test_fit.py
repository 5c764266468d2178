"""Axis fitting: OLS (closed form, chunked), logistic (optax L-BFGS), SVM (InterFaceGAN),
diagnostics, and bad inputs. scikit-learn is the reference (test-only dependency)."""
import jax
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import r2_score, roc_auc_score
from sklearn.svm import SVC

from tlgan_jax import metrics
from tlgan_jax.axes import Axes
from tlgan_jax.fit import METHODS, fit_axes, split_rows
from tlgan_jax.fit.ols import fit_ols
from tlgan_jax.fit.svm import select_extremes


def cos(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def linear_data(seed, n, d, k, noise, offset=0.0, scale=1.0):
    """z ~ offset + scale·N(0, I); y = z·β + b + noise·ε with ‖β_a‖ = 1."""
    rng = np.random.default_rng(seed)
    z = (offset + scale * rng.normal(size=(n, d))).astype(np.float32)
    beta = rng.normal(size=(d, k))
    beta /= np.linalg.norm(beta, axis=0)
    b = rng.normal(size=k)
    y = (z.astype(np.float64) @ beta + b + noise * rng.normal(size=(n, k))).astype(np.float32)
    return z, y, beta, b


# --- OLS -------------------------------------------------------------------------------------

@pytest.mark.parametrize("d", [64, 256])
def test_ols_recovers_direction_with_theoretical_cosine(d):
    n, k, sigma = 8000, 4, 2.0
    z, y, beta, _ = linear_data(1, n, d, k, sigma)
    axes = fit_axes(z, y, "ols", holdout=0.2, key=jax.random.key(0))
    n_train = axes.diagnostics["attr0"]["n_train"]
    theory = (1 + d * sigma ** 2 / (n_train * 1.0)) ** -0.5
    got = [cos(axes[f"attr{a}"], beta[:, a]) for a in range(k)]
    assert np.all(np.abs(np.array(got) - theory) < 0.02), (got, theory)
    # the split-half cosine predicts the accuracy (isotropic noise model, N/2 fits)
    half = (1 + d * sigma ** 2 / (n_train / 2)) ** -0.5
    for a in range(k):
        dg = axes.diagnostics[f"attr{a}"]
        assert abs(dg["split_half_cosine"] - half ** 2) < 0.04
        assert abs(dg["cosine_to_truth_est"] - got[a]) < 0.03
        # out-of-sample R²: Var(y) = 1 + σ², MSE = σ² (1 + d / (n − d − 1))
        r2_expected = 1 - sigma ** 2 * (1 + d / (n_train - d - 1)) / (1 + sigma ** 2)
        assert abs(dg["r2"] - r2_expected) < 0.08
        assert "auc" not in dg                              # continuous by default for ols


def test_ols_equals_numpy_lstsq_with_intercept():
    z, y, _, _ = linear_data(2, 3000, 64, 3, 0.5, offset=3.0, scale=2.0)
    design = np.c_[z.astype(np.float64), np.ones(len(z))]
    sol = np.linalg.lstsq(design, y.astype(np.float64), rcond=None)[0]
    coef, intercept, _ = fit_ols(z, y, np.ones((1, len(z))), chunk_size=700)   # ragged chunks
    np.testing.assert_allclose(np.asarray(coef[0]), sol[:-1], atol=1e-4)
    np.testing.assert_allclose(np.asarray(intercept[0]), sol[-1], atol=1e-4)
    # through fit_axes without holdout: unit directions, coefficient norm and intercept kept
    axes = fit_axes(z, y, "ols", holdout=0.0, split_half=False)
    for a, name in enumerate(axes.names):
        unit = sol[:-1, a] / np.linalg.norm(sol[:-1, a])
        np.testing.assert_allclose(np.asarray(axes[name]), unit, atol=1e-5)
        assert axes.diagnostics[name]["coef_norm"] == pytest.approx(np.linalg.norm(sol[:-1, a]),
                                                                    rel=1e-5)
        assert axes.diagnostics[name]["intercept"] == pytest.approx(sol[-1, a], abs=1e-4)


def test_ols_disjoint_parts_and_their_union_match_separate_fits():
    z, y, _, _ = linear_data(3, 2000, 32, 2, 1.0, offset=-1.0)
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(z))
    masks = np.zeros((3, len(z)), np.float32)
    masks[1, perm[:800]] = 1
    masks[2, perm[800:1700]] = 1                         # unequal halves, 300 rows unused
    masks[0] = masks[1] + masks[2]
    coef, intercept, _ = fit_ols(z, y, masks, chunk_size=256)
    for f in range(3):
        rows = masks[f] > 0
        design = np.c_[z[rows].astype(np.float64), np.ones(rows.sum())]
        sol = np.linalg.lstsq(design, y[rows].astype(np.float64), rcond=None)[0]
        np.testing.assert_allclose(np.asarray(coef[f]), sol[:-1], atol=1e-4)
        np.testing.assert_allclose(np.asarray(intercept[f]), sol[-1], atol=1e-4)


def test_ols_rejects_singular_latents():
    z = np.random.default_rng(0).normal(size=(500, 8)).astype(np.float32)
    z[:, 3] = z[:, 2]                                     # collinear columns
    y = z[:, :1] + 0.1
    with pytest.raises(ValueError, match="singular"):
        fit_axes(z, y, "ols", holdout=0.0, split_half=False)
    with pytest.raises(ValueError, match="more rows than latent dimensions"):
        fit_axes(z[:8], y[:8], "ols", holdout=0.0, split_half=False)
    # ridge makes it solvable
    axes = fit_axes(z, y, "ols", holdout=0.0, split_half=False, ridge=1e-3)
    assert axes["attr0"][0] == pytest.approx(1.0, abs=1e-3)


# --- logistic --------------------------------------------------------------------------------

@pytest.mark.slow
def test_logistic_matches_sklearn_on_the_training_split():
    n, d, k, l2 = 4000, 64, 3, 1e-3
    z, y, beta, _ = linear_data(4, n, d, k, 1.0)
    key = jax.random.key(7)
    axes = fit_axes(z, y, "logistic", names=["a", "b", "c"], key=key, l2=l2)
    n_hold = axes.diagnostics["a"]["n_holdout"]
    hold, halves = split_rows(key, n, n_hold)
    train = np.sort(np.concatenate(halves))
    for a, name in enumerate(axes.names):
        ref = LogisticRegression(C=1.0 / (l2 * train.size), tol=1e-10, max_iter=10_000)
        ref.fit(z[train].astype(np.float64), y[train, a] > 0)
        w = ref.coef_[0]
        assert cos(axes[name], w) >= 0.999
        dg = axes.diagnostics[name]
        assert dg["coef_norm"] == pytest.approx(np.linalg.norm(w), rel=1e-3)
        assert dg["intercept"] == pytest.approx(ref.intercept_[0], abs=1e-3)
        assert dg["converged"] is True
        # held-out AUC as sklearn computes it
        scores = z[hold].astype(np.float64) @ np.asarray(axes[name], np.float64)
        assert dg["auc"] == pytest.approx(roc_auc_score(y[hold, a] > 0, scores), abs=1e-5)
        assert 0.8 < dg["split_half_cosine"] <= 1.0            # regression floors (from
        assert cos(axes[name], beta[:, a]) > 0.95              # runs of this code)
    assert axes.metadata["fit"]["opts"]["l2"] == l2


def test_logistic_needs_binary_attributes_with_both_classes():
    z, y, _, _ = linear_data(5, 400, 8, 2, 1.0)
    with pytest.raises(ValueError, match=r"needs binary attributes; \['b'\] are continuous"):
        fit_axes(z, y, "logistic", names=["a", "b"], binary=[True, False], key=jax.random.key(0))
    y1 = np.abs(y) + 1.0                                  # every label positive
    with pytest.raises(ValueError, match="attribute 'a' has only one class"):
        fit_axes(z, y1, "logistic", names=["a", "b"], key=jax.random.key(0))
    with pytest.raises(ValueError, match="l2 must be > 0"):
        fit_axes(z, y, "logistic", key=jax.random.key(0), l2=0.0)


# --- svm (InterFaceGAN) ----------------------------------------------------------------------

@pytest.mark.slow
def test_svm_matches_sklearn_svc_on_score_extremes():
    n, d, k, ratio = 4000, 32, 2, 0.05
    z, y, beta, _ = linear_data(6, n, d, k, 1.5)
    key = jax.random.key(3)
    axes = fit_axes(z, y, "svm", names=["p", "q"], key=key, ratio=ratio)
    hold, halves = split_rows(key, n, axes.diagnostics["p"]["n_holdout"])
    train = np.sort(np.concatenate(halves))
    for a, name in enumerate(axes.names):
        idx, lab = select_extremes(y[:, a], train, ratio)
        assert idx.size == 2 * int(train.size * ratio)
        assert y[idx[lab > 0], a].min() >= y[idx[lab < 0], a].max()
        ref = SVC(kernel="linear", C=1.0, tol=1e-6).fit(z[idx].astype(np.float64), lab)
        assert cos(axes[name], ref.coef_[0]) >= 0.99
        # regression floors (from runs of this code): towards higher scores, separable extremes
        assert cos(axes[name], beta[:, a]) > 0.8
        dg = axes.diagnostics[name]
        assert 0.5 < dg["auc"] <= 1.0 and 0.9 < dg["auc_extremes"] <= 1.0
    assert axes.metadata["fit"]["opts"]["n_selected_per_side"][0] == int(train.size * ratio)


# --- diagnostics -----------------------------------------------------------------------------

def test_metrics_match_sklearn():
    rng = np.random.default_rng(8)
    scores = np.round(rng.normal(size=500), 1).astype(np.float32)     # many ties
    labels = rng.random(500) < 1 / (1 + np.exp(-2 * scores))
    assert float(metrics.roc_auc(scores, labels)) == pytest.approx(
        roc_auc_score(labels, scores), abs=1e-6)
    assert np.isnan(float(metrics.roc_auc(scores, np.ones(500, bool))))
    y = rng.normal(size=(300, 2))
    pred = y + rng.normal(size=(300, 2)) * 0.5
    np.testing.assert_allclose(np.asarray(metrics.r2_score(pred, y)),
                               r2_score(y, pred, multioutput="raw_values"), atol=1e-5)
    a, b = rng.normal(size=(10, 3)), rng.normal(size=(10, 3))
    np.testing.assert_allclose(np.asarray(metrics.cosine(a, b)),
                               [cos(a[:, i], b[:, i]) for i in range(3)], atol=1e-6)


def test_ols_diagnostics_on_holdout_match_sklearn():
    z, y, _, _ = linear_data(9, 3000, 64, 2, 1.0)
    key = jax.random.key(11)
    axes = fit_axes(z, {"bin": y[:, 0], "cont": y[:, 1]}, "ols", binary=[True, False], key=key)
    assert axes.names == ("bin", "cont")
    hold, _ = split_rows(key, len(z), axes.diagnostics["bin"]["n_holdout"])
    assert hold.size == 600
    for a, name in enumerate(axes.names):
        dg = axes.diagnostics[name]
        w = np.asarray(axes[name], np.float64) * dg["coef_norm"]
        pred = z[hold].astype(np.float64) @ w + dg["intercept"]
        assert dg["r2"] == pytest.approx(r2_score(y[hold, a], pred), abs=1e-4)
    assert axes.diagnostics["bin"]["auc"] == pytest.approx(
        roc_auc_score(y[hold, 0] > 0, z[hold] @ np.asarray(axes["bin"])), abs=1e-5)
    assert "auc" not in axes.diagnostics["cont"]


# --- bad inputs ------------------------------------------------------------------------------

def test_bad_inputs_raise_clear_errors():
    z, y, _, _ = linear_data(10, 200, 8, 2, 1.0)
    key = jax.random.key(0)
    z_nan, y_nan = z.copy(), y.copy()
    z_nan[5, 3] = np.nan
    y_nan[7, 1] = np.inf
    with pytest.raises(ValueError, match="z contains NaN"):
        fit_axes(z_nan, y, key=key)
    with pytest.raises(ValueError, match=r"y contains NaN .* in attribute\(s\) \['attr1'\]"):
        fit_axes(z, y_nan, key=key)
    with pytest.raises(ValueError, match="z has 200 rows but y has 199"):
        fit_axes(z, y[:199], key=key)
    with pytest.raises(ValueError, match=r"z must have shape \[N, latent_dim\]"):
        fit_axes(z[0], y, key=key)
    with pytest.raises(ValueError, match=r"y must have shape \[N, k\]"):
        fit_axes(z, y[:, 0], key=key)
    with pytest.raises(ValueError, match="3 names for 2 attributes"):
        fit_axes(z, y, names=["a", "b", "c"], key=key)
    with pytest.raises(ValueError, match="unknown method 'lasso'"):
        fit_axes(z, y, method="lasso", key=key)
    with pytest.raises(ValueError, match="key .* is required"):
        fit_axes(z, y)
    with pytest.raises(ValueError, match=r"holdout must be in \[0, 1\)"):
        fit_axes(z, y, holdout=1.0, key=key)
    with pytest.raises(ValueError, match="1 binary flags for 2 attributes"):
        fit_axes(z, y, binary=[True], key=key)
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['l2'\] for method 'ols'"):
        fit_axes(z, y, key=key, l2=1.0)
    with pytest.raises(ValueError, match="do not match the keys of y"):
        fit_axes(z, {"a": y[:, 0]}, names=["b"], key=key)
    with pytest.raises(ValueError, match="svm: ratio must be in"):
        fit_axes(z, y, "svm", key=key, ratio=0.7)


def test_method_registry_is_a_plain_dict_of_functions():
    assert set(METHODS) >= {"ols", "logistic", "svm"}
    assert all(callable(f) for f in METHODS.values())
    z, y, _, _ = linear_data(12, 300, 6, 1, 0.1)
    axes = fit_axes(z, y, "ols", names="smile", key=jax.random.key(1),
                    metadata={"generator": "toy", "seed": 1})
    assert isinstance(axes, Axes) and axes.names == ("smile",) and axes.method == "ols"
    assert axes.metadata["generator"] == "toy" and axes.metadata["latent_dim"] == 6
    assert axes.metadata["fit"]["n_holdout"] == 60 and axes.metadata["fit"]["num_samples"] == 300
    np.testing.assert_allclose(np.linalg.norm(np.asarray(axes.directions), axis=0), 1.0, atol=1e-6)
