"""The throughput benchmark's library: the fast path's fidelity check (known answers, the bf16
path of a fixture pg-GAN against float32) and its refusals."""
import numpy as np
import pytest

from tlgan_jax.bench import throughput

from helpers import pggan_fixtures_dir


def test_output_agreement_has_its_known_values():
    rng = np.random.default_rng(0)
    y_ref = rng.normal(size=(500, 3))
    agree = throughput.output_agreement(y_ref, y_ref * 1.01, ("a", "b", "c"), (True, True, False))
    assert agree["rms_rel"] == pytest.approx(0.01) and agree["max_rel"] == pytest.approx(0.01)
    assert agree["within_bf16_tolerance"]
    a = agree["attributes"]
    assert a["a"]["correlation"] == pytest.approx(1.0) and a["a"]["sign_agreement"] == 1.0
    assert a["c"]["sign_agreement"] is None                 # not a binary score
    assert a["b"]["max_abs"] == pytest.approx(0.01 * np.abs(y_ref[:, 1]).max())
    # noise of 5% of the scale: outside the tolerance, correlation and signs degrade
    noisy = throughput.output_agreement(y_ref, y_ref + 0.05 * rng.normal(size=y_ref.shape),
                                        ("a", "b", "c"), (True, True, False))
    assert noisy["rms_rel"] == pytest.approx(0.05, rel=0.1) and not noisy["within_bf16_tolerance"]
    assert 0.99 < noisy["attributes"]["a"]["correlation"] < 0.9995
    assert 0.9 < noisy["attributes"]["a"]["sign_agreement"] < 1.0
    with pytest.raises(ValueError, match=r"scores must both be \[N, 3\]"):
        throughput.output_agreement(y_ref, y_ref[:, :2], ("a", "b", "c"), (True,) * 3)


@pytest.mark.slow
def test_bf16_fast_path_reproduces_float32_attribute_outputs():
    pkl = pggan_fixtures_dir() / "tiny32_lod0.pkl"
    name, exts = f"pggan:{pkl}", ["celeba40-random"]
    agree = throughput.fast_path_agreement(throughput.load_models(name, exts, "float32"),
                                           throughput.load_models(name, exts, "bfloat16"),
                                           num=32, batch=16)
    assert agree["num"] == 32 and len(agree["attributes"]) == 40
    assert 1e-4 < agree["rms_rel"] <= throughput.BF16_RMS_TOL   # bf16 changed something, not much
    assert agree["max_rel"] <= throughput.BF16_MAX_TOL and agree["within_bf16_tolerance"]
    assert min(a["correlation"] for a in agree["attributes"].values()) > 0.99   # regr. floor


def test_bf16_is_refused_for_a_generator_without_a_fast_path():
    with pytest.raises(ValueError, match="'digiface64' has no bfloat16 fast path"):
        throughput.load_models("digiface64", ["gender"], "bfloat16")
    with pytest.raises(ValueError, match="dtype must be one of"):
        throughput.load_models("digiface64", ["gender"], "float16")


FAKE_PEER = """
import sys
rate = float(open(sys.argv[0] + ".rate").read())
print(f"peer (torch DCGAN + onnxruntime gender+age), batch 256: {rate:.1f} labelled samples/s "
      f"(generator alone {2 * rate:.1f}/s); gender out (256, 2), age out (256, 81)")
"""


def test_peer_rounds_alternate_and_report_the_median_ratio(tmp_path):
    import sys

    from tlgan_jax.sampling import Sampler

    from toy import toy_extractor, toy_generator
    script = tmp_path / "peer.py"
    script.write_text(FAKE_PEER)
    (tmp_path / "peer.py.rate").write_text("1e9")           # a peer far faster than the toy
    sampler = Sampler(toy_generator(), [toy_extractor()], batch_size=64)
    out = throughput.peer_rounds(sampler, 128, 3, sys.executable, script)
    assert len(out["rounds"]) == 3
    for r in out["rounds"]:
        assert r["peer_samples_per_second"] == 1e9
        assert r["peer_generator_alone_per_second"] == 2e9
        assert r["ratio"] == pytest.approx(r["ours_samples_per_second"] / 1e9)
        assert len(r["load_average_before"]) == len(r["load_average_after"]) == 3
    ratios = [r["ratio"] for r in out["rounds"]]
    assert out["median_ratio"] == pytest.approx(float(np.median(ratios)))
    assert out["min_ratio"] <= out["median_ratio"] <= out["max_ratio"]
    script.write_text("import sys; sys.exit('no torch here')")
    with pytest.raises(RuntimeError, match="the peer .* failed: no torch here"):
        throughput.run_peer(sys.executable, 64, script)
    script.write_text("print('something else')")
    with pytest.raises(RuntimeError, match="could not parse the peer's output"):
        throughput.run_peer(sys.executable, 64, script)


def test_cpu_profile_parts_add_up_and_the_floor_follows_from_flops():
    from toy import toy_extractor, toy_generator
    gen = toy_generator(latent_dim=32, resolution=16, width=4)
    p = throughput.cpu_profile((gen, [toy_extractor()]), batch=64, rounds=1, calls=1,
                               matmul_size=256, conv_batch=2)
    nets = p["networks"]
    assert set(nets) == {"generator: toy", "extractor: toy", "labeller (all)"}
    matmul = 2 * 32 * 16 * 16 * 3 * 4 / 1e6          # the toy generator's z @ W, per sample
    assert matmul <= nets["generator: toy"]["mflop_per_sample_xla"] <= 1.1 * matmul
    parts = sum(nets[k]["mflop_per_sample_xla"] for k in ("generator: toy", "extractor: toy"))
    assert nets["labeller (all)"]["mflop_per_sample_xla"] == pytest.approx(parts, rel=1e-3)
    assert p["floor_gflops"] == max(p["attainable"]["gflops"].values()) > 0
    labeller = nets["labeller (all)"]
    floor_us = labeller["mflop_per_sample_xla"] * 1e6 / (p["floor_gflops"] * 1e9) * 1e6
    assert p["floor_ms_per_sample"] == pytest.approx(floor_us / 1e3)
    assert p["fraction_of_floor"] == pytest.approx(floor_us / labeller["us_per_sample"])
    assert p["machine"]["cpu_model"] and p["load_average_before"] and "load average" in p["caveat"]
