"""The axis-quality benchmark: metric code checked against known answers on synthetic linear
models (y = z·β + σε, so the true axis is known), the repeat layout, files and the pipeline."""
import csv
import math

import numpy as np
import pytest
from scipy.stats import norm

from tlgan_jax.bench import axis_quality as q
from tlgan_jax.bench import reports
from tlgan_jax.fit import method_targets

from toy import toy_extractor, toy_generator


def linear_data(d, betas, sigma, counts, heldout, edit, seed):
    """QualityData for y = z·β + σ ε with pool 2·N_max, fresh held-out and edit sets."""
    k = betas.shape[1]

    def make(n, s):
        r = np.random.default_rng(s)
        z = r.normal(size=(n, d)).astype(np.float32)
        return z, (z.astype(np.float64) @ betas + sigma * r.normal(size=(n, k))).astype(np.float32)

    zp, yp = make(2 * max(counts), seed)
    zh, yh = make(heldout, seed + 1)
    ze, ye = make(edit, seed + 2)
    return q.QualityData(zp, yp, zh, yh, ze, ye, tuple(f"a{i}" for i in range(k)), (False,) * k)


def mean_of(rows, column, n):
    return float(np.mean([r[column] for r in rows if r["n"] == n]))


@pytest.mark.slow
def test_ols_cosines_follow_the_theory():
    # d = 128, 32 attributes with ‖β‖² = d/a: cos(fit on n, truth) = (1 + a/n)^(-1/2)
    d, k, a, sigma = 128, 32, 2560.0, 1.0
    rng = np.random.default_rng(0)
    betas = rng.normal(size=(d, k))
    betas *= np.sqrt(d * sigma ** 2 / a) / np.linalg.norm(betas, axis=0)
    counts = (4000, 16000, 64000)
    data = linear_data(d, betas, sigma, counts, heldout=2000, edit=4, seed=1)
    cfg = q.QualityConfig(sample_counts=counts, methods=("ols",), repeats=2,
                          heldout_samples=2000, edit_faces=4)
    res = q.run_quality(data, lambda z: z @ betas, cfg, truth=betas)
    assert len(res.rows) == len(counts) * 2 * k

    def c(n, exact=False):         # exact: E‖noise‖² = dσ²/(n − d − 2) (Wishart mean)
        return (1 + a / ((n - d - 2) if exact else n)) ** -0.5

    for n in counts:
        truth = mean_of(res.rows, "truth_cosine", n)
        split = mean_of(res.rows, "split_half_cosine", n)
        ref = mean_of(res.rows, "reference_cosine", n)
        # finite-sample theory everywhere; the asymptotic formula where n/2 >> d
        assert abs(truth - c(n, True)) < 0.02, (n, truth)
        assert abs(split - c(n / 2, True) ** 2) < 0.02, (n, split)
        assert abs(ref - c(n, True) * c(counts[-1], True)) < 0.02, (n, ref)
        if n >= 16000:
            assert abs(truth - c(n)) < 0.02 and abs(split - c(n / 2) ** 2) < 0.02
            assert abs(ref - c(n) * c(counts[-1])) < 0.02
    # held-out R² of the axis: R² · cos² with R² = ‖β‖² / (‖β‖² + σ²)
    r2 = 1 / (1 + a / d)
    assert mean_of(res.rows, "heldout_r2", 64000) == pytest.approx(r2 * c(64000) ** 2, abs=0.01)
    # the theory helpers agree with each other and with the curve
    for t in (0.95, 0.99):
        n_t = reports.theory_n_for_split_half(t, r2, d)
        assert n_t == pytest.approx(2 * a * t / (1 - t))
        assert reports.theory_split_half(n_t, r2, d) == pytest.approx(t)


@pytest.mark.slow
def test_edit_success_and_leakage_have_their_known_values():
    # two correlated attributes (cos(β_0, β_1) = 0.6), fits nearly exact (low pool noise),
    # edits re-scored by a noisy labeller against y0 = the edit set's own scores (noise
    # σ_pool): P(success) = Φ(λ n·β / √(σ_label² + σ_pool²))
    d, lam, sigma_label = 16, 3.0, 1.0
    rng = np.random.default_rng(3)
    e0, e1 = np.linalg.qr(rng.normal(size=(d, 2)))[0].T
    betas = np.stack([0.30 * e0, 0.45 * (0.6 * e0 + 0.8 * e1)], axis=1)
    sigma_pool = 0.02
    data = linear_data(d, betas, sigma_pool, (1000, 2000), heldout=4000, edit=4000, seed=4)
    unit = betas / np.linalg.norm(betas, axis=0)
    candidates = np.concatenate([np.linalg.qr(rng.normal(size=(d, 3)))[0], unit], axis=1)
    label_rng = np.random.default_rng(5)

    def label(z):
        return z @ betas + sigma_label * label_rng.normal(size=(z.shape[0], 2))

    cfg = q.QualityConfig(sample_counts=(1000, 2000), methods=("ols", "sefa"), repeats=1,
                          heldout_samples=4000, edit_faces=4000, step=lam)
    res = q.run_quality(data, label, cfg, {"sefa": {"directions": candidates}}, truth=betas)
    sd = data.y_heldout.std(axis=0)
    norms = np.linalg.norm(betas, axis=0)
    for row in res.rows:
        a = int(row["attribute"][1:])
        b = 1 - a
        p = norm.cdf(lam * norms[a] / np.hypot(sigma_label, sigma_pool))
        assert row["edit_success_up"] == pytest.approx(p, abs=0.025), row
        assert row["edit_success_down"] == pytest.approx(p, abs=0.025), row
        free = (unit[:, a] @ betas[:, b] / sd[b]) / (unit[:, a] @ betas[:, a] / sd[a])
        assert row["leakage"] == pytest.approx(abs(free), abs=0.03), row
        # locked: orthogonal to the other axis, so only label noise is left; its standard
        # error: sqrt(2/M)·σ_label/sd_b over the intended change 2λ·sin(β_a, β_b)·|β_a|/sd_a
        se = np.sqrt(2 / 4000) * sigma_label / sd[b] / (2 * lam * 0.8 * norms[a] / sd[a])
        assert row["leakage_locked"] < 4 * se, row
        assert row["truth_cosine"] > 0.999
        if row["method"] == "sefa":                       # the planted candidate wins
            assert row["candidate"] == 3 + a and row["candidate_corr"] > 0.99
            assert row["split_half_cosine"] == pytest.approx(1.0, abs=1e-6)
    ent = [e for e in res.entanglement if e["method"] == "ols" and e["attribute"] == "a0"]
    assert {e["other"] for e in ent} == {"a1"}
    # unsupervised directions repeat across N: their edits were scored once
    assert res.meta["edit_labels"] == 4000 * 2 * (4 * 2 + 4)


def test_repeats_are_nested_disjoint_and_independent_of_their_reference():
    pool, n_max, repeats = 600, 300, 3
    trains, refs = zip(*(q.repeat_rows(pool, n_max, repeats, r) for r in range(repeats)))
    for train, ref in zip(trains, refs):
        assert len(set(train)) == n_max and len(ref) == n_max
        assert not set(train) & set(ref)                  # reference independent of all N
    for r in range(repeats):
        for s in range(r + 1, repeats):
            assert not set(trains[r][:pool // repeats]) & set(trains[s][:pool // repeats])
    np.testing.assert_array_equal(trains[1][:10], np.arange(200, 210))   # offset ⌊r·P/R⌋
    with pytest.raises(ValueError, match="needs 2·N_max = 600"):
        q.repeat_rows(500, 300, 3, 0)


def test_config_checks_and_helpers():
    with pytest.raises(ValueError, match="unknown method\\(s\\) \\['lasso'\\]"):
        q.QualityConfig(methods=("ols", "lasso"))
    with pytest.raises(ValueError, match="max_n: entries"):
        q.QualityConfig(methods=("ols",), max_n={"svm": 1000})
    cfg = q.QualityConfig(sample_counts=(5000, 1000, 2000), methods=("ols", "svm"),
                          max_n={"svm": 2000})
    assert cfg.sample_counts == (1000, 2000, 5000) and cfg.counts_for("svm") == (1000, 2000)
    assert q.default_sample_counts("cpu")[-1] == 100_000
    assert q.default_sample_counts("gpu")[-1] == 1_000_000
    n = np.array([1000, 2000, 4000])
    assert reports.first_n_reaching(n, np.array([0.9, 0.94, 0.96]), 0.95) == pytest.approx(
        2000 * 2 ** 0.5)
    assert reports.first_n_reaching(n, np.array([0.9, 0.94, 0.96]), 0.99) == math.inf
    assert reports.first_n_reaching(n, np.array([0.99, 0.995, 1.0]), 0.95) == -math.inf


def test_method_targets():
    y = np.array([[-5.0, 10.0], [0.5, 30.0], [4.0, 20.0]], np.float32)
    binary = (True, False)
    median = np.median(y, axis=0)
    t, flags = method_targets("ols", y, binary, 3.0, median)      # TL-GAN: clip the logits
    np.testing.assert_array_equal(t, [[-3, 10], [0.5, 30], [3, 20]])
    assert flags == binary
    t, flags = method_targets("logistic", y, binary, 3.0, median)  # median split if continuous
    assert flags == (True, True)
    np.testing.assert_array_equal(t > 0, [[False, False], [True, True], [True, False]])
    t, flags = method_targets("svm", y, binary, 3.0, median)       # extremes of raw scores
    np.testing.assert_array_equal(t, y)
    assert flags == binary


@pytest.mark.slow
def test_benchmark_writes_documented_csv_plot_and_summary(tmp_path):
    gen, ext = toy_generator(latent_dim=16), toy_extractor()
    cfg = q.QualityConfig(sample_counts=(100, 200), methods=("ols",), repeats=2,
                          heldout_samples=200, edit_faces=16, progress=False)
    res = q.benchmark_axis_quality(gen, [ext], tmp_path, cfg, log=lambda s: None)
    with open(tmp_path / "axis_quality.csv", newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == reports.CSV_COLUMNS
        rows = list(reader)
    assert len(rows) == 2 * 2 * 2                         # N × repeats × attributes
    for name in ("split_half_cosine", "reference_cosine", "heldout_auc", "heldout_r2",
                 "edit_success", "leakage", "leakage_locked"):
        assert name in reports.CSV_COLUMNS
    redder = [r for r in rows if r["attribute"] == "redder"]
    bright = [r for r in rows if r["attribute"] == "bright"]
    assert all(r["heldout_auc"] != "" for r in redder)     # binary: AUC
    assert all(r["heldout_auc"] == "" and r["heldout_r2"] != "" for r in bright)
    back = reports.read_csv(tmp_path / "axis_quality.csv")
    assert back[0]["n"] == 100 and isinstance(back[0]["split_half_cosine"], float)
    ols_big = [r for r in back if r["method"] == "ols" and r["n"] == 200]
    # regression floor (toy generator, from runs of this code)
    assert all(r["reference_cosine"] > 0.9 and r["edit_success"] > 0.9 for r in ols_big)
    with open(tmp_path / "entanglement.csv", newline="") as f:
        assert tuple(csv.DictReader(f).fieldnames) == reports.ENTANGLEMENT_COLUMNS
    png = (tmp_path / "axis_quality.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    summary = (tmp_path / "summary.md").read_text()
    assert "N for 0.95" in summary and "| redder | ols |" in summary
    assert "OLS theory" in summary and "Wall time" in summary and "load average" in summary
    assert res.meta["latent_dim"] == 16
    assert (tmp_path / "samples" / "pool" / "manifest.json").exists()   # resumable shards
    # --replot: the reports come back from the CSV and meta.json alone
    (tmp_path / "summary.md").unlink()
    (tmp_path / "axis_quality.png").unlink()
    reports.write_reports(tmp_path)
    again = (tmp_path / "summary.md").read_text()
    assert again.splitlines()[:8] == summary.splitlines()[:8]      # setup, timing, machine
    assert len(again.splitlines()) == len(summary.splitlines())
    assert (tmp_path / "axis_quality.png").exists()


def test_edit_scorer_per_judge_and_identity_known_answers():
    # linear scores y = z·β (noise-free): every edit works for its own column; a backwards
    # judge (−y_0) never agrees, a rescaled judge (2·y_1) always; descriptor D = z M moves by
    # exactly λ‖Mᵀn‖ for every face
    d, rng = 6, np.random.default_rng(0)
    beta, m = rng.normal(size=(d, 2)), rng.normal(size=(d, 3))
    label = lambda z: np.concatenate([z @ beta, -(z @ beta[:, :1]), 2 * (z @ beta[:, 1:]),
                                      z @ m], axis=1).astype(np.float32)
    z = rng.normal(size=(32, d)).astype(np.float32)
    n = (beta / np.linalg.norm(beta, axis=0)).astype(np.float32)
    per_unit = np.linalg.norm(m.T @ n, axis=0)                       # [2]
    step = 2.0
    thr = float(step * per_unit.mean())                              # between the two axes
    assert (step * per_unit < thr).tolist() in ([True, False], [False, True])
    scorer = q.EditScorer(label, z, label(z), step, np.ones(2), judges={0: [2], 1: [3]},
                          descriptor=([4, 5, 6], thr))
    out = scorer.evaluate(n, None)
    np.testing.assert_array_equal(out["success_up"], [1.0, 1.0])
    assert out["judged"] == {0: {2: (0.0, 0.0)}, 1: {3: (1.0, 1.0)}}
    np.testing.assert_allclose(out["distance_per_unit"], per_unit, rtol=1e-4)
    np.testing.assert_array_equal(out["identity_kept_up"], (step * per_unit < thr).astype(float))
    np.testing.assert_array_equal(out["identity_kept_down"], out["identity_kept_up"])
    assert out["entanglement"].shape == (2, 2)                      # attribute columns only


def test_benchmark_with_judges_and_descriptor_writes_their_columns_and_panels(tmp_path):
    import jax.numpy as jnp

    from tlgan_jax.extractors import FaceDescriptor, custom_extractor
    gen, ext = toy_generator(latent_dim=16), toy_extractor()
    backwards = custom_extractor(lambda im: {"bright_j": -im.mean(axis=(1, 2, 3))}, ("bright_j",),
                                 name="backwards")
    rescaled = custom_extractor(lambda im: {"redder_j": 20.0 * (im[..., 0] - im[..., 2]).mean(
        axis=(1, 2))}, ("redder_j",), name="rescaled", binary=(True,))
    desc = FaceDescriptor(name="toydesc", dim=3, threshold=1e6, input_shape=(3, 8, 8),
                          params=None, raw_apply=lambda p, x: x.mean(axis=(2, 3)),
                          preprocess=lambda im: jnp.transpose(im, (0, 3, 1, 2)))
    cfg = q.QualityConfig(sample_counts=(100, 200), methods=("ols",), repeats=1,
                          heldout_samples=100, edit_faces=16, progress=False)
    q.benchmark_axis_quality(gen, [ext], tmp_path, cfg, log=lambda s: None,
                             judges=[backwards, rescaled], descriptor=desc,
                             groups=[("bright", "bright_j"), ("redder", "redder_j")])
    with open(tmp_path / "axis_quality.csv", newline="") as f:
        assert tuple(csv.DictReader(f).fieldnames) == reports.csv_columns(
            ["bright_j", "redder_j"], identity=True)
    rows = reports.read_csv(tmp_path / "axis_quality.csv")
    assert len(rows) == 2 * 2
    for r in rows:
        if r["attribute"] == "bright":        # the backwards judge sees the opposite move
            assert r["judge_bright_j_success_up"] == 1 - r["edit_success_up"]
            assert r["judge_bright_j_success_down"] == 1 - r["edit_success_down"]
            assert r["judge_redder_j_success_up"] is None
        else:                                 # the rescaled judge agrees face by face
            assert r["judge_redder_j_success_up"] == r["edit_success_up"]
            assert r["independent_success"] == r["edit_success"]
        assert r["identity_kept"] == 1.0 and r["distance_per_unit"] > 0   # threshold 1e6
    summary = (tmp_path / "summary.md").read_text()
    assert "edit success, own judge | edit success, independent judge | identity kept" in summary
    assert "Independent judges: bright by bright_j; redder by redder_j." in summary
    # per sign, own judge beside each judge, at the largest N; and the best (method, N) under
    # the independent judges (the worse sign's success, highest)
    top = {r["attribute"]: r for r in rows if r["n"] == 200}
    b, c = top["bright"], top["redder"]
    assert (f"| bright | ols | 200 | {b['edit_success_up']:.2f} / {b['edit_success_down']:.2f} "
            f"| {1 - b['edit_success_up']:.2f} / {1 - b['edit_success_down']:.2f} | - / - | "
            f"1.00 / 1.00 |") in summary
    assert (f"| redder | ols | 200 | {c['edit_success_up']:.2f} / {c['edit_success_down']:.2f} "
            f"| - / - | {c['edit_success_up']:.2f} / {c['edit_success_down']:.2f} | "
            f"1.00 / 1.00 |") in summary
    for attr in ("bright", "redder"):
        best = max((r for r in rows if r["attribute"] == attr), key=lambda r: (min(
            r["independent_success_up"], r["independent_success_down"]), -r["n"]))
        assert (f"- {attr}: ols at N = {best['n']}: +λ {best['independent_success_up']:.2f} / "
                f"−λ {best['independent_success_down']:.2f}") in summary
    png = (tmp_path / "axis_quality.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    # the plot's edit-success panel shows the judges beside the own net; none shows it alone
    metrics = [m for m, _ in reports.plot_panels(rows)]
    assert "judges" in metrics and "edit_success" not in metrics and "identity_kept" in metrics
    own_only = [{k: v for k, v in r.items() if not k.startswith(("independent", "identity"))}
                for r in rows]
    assert "edit_success" in [m for m, _ in reports.plot_panels(own_only)]
    # --replot from the CSV alone keeps the judge and identity columns in the summary
    (tmp_path / "summary.md").unlink()
    reports.write_reports(tmp_path)
    assert (tmp_path / "summary.md").read_text() == summary
