"""Sampler: determinism across batch sizes, devices and processes; resume after SIGKILL."""
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from tlgan_jax.sampling import Sampler, sample, shard_latents
from tlgan_jax.store import ShardStore, ShardStoreError, load_samples

from helpers import PARITY_TOL, rel_error
from toy import toy_extractor, toy_generator, toy_scores

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def _child_env(**extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(HERE), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


def test_same_seed_same_samples_whatever_the_batch_size():
    gen, ext = toy_generator(), toy_extractor()
    a = sample(gen, [ext], num=1000, seed=3, batch_size=64, shard_size=256, progress=False)
    b = sample(gen, [ext], num=1000, seed=3, batch_size=100, shard_size=256, progress=False)
    np.testing.assert_array_equal(a.z, b.z)
    np.testing.assert_allclose(a.y, b.y, rtol=1e-6, atol=1e-6)
    assert a.y.shape == (1000, 2) and a.names == ("bright", "redder")
    # shard i draws from fold_in(key, i): the latents are exactly those, in order
    z1 = np.asarray(shard_latents(jax.random.key(3), 1, 256, gen.latent_dim))
    np.testing.assert_array_equal(a.z[256:512], z1)
    c = sample(gen, [ext], num=1000, seed=4, batch_size=64, shard_size=256, progress=False)
    assert not np.allclose(a.z, c.z)


def test_labels_are_the_extractor_applied_to_the_generator():
    gen, ext = toy_generator(), toy_extractor()
    s = sample(gen, [ext], num=300, seed=0, batch_size=128, shard_size=128, progress=False)
    ref = toy_scores(gen(s.z))
    np.testing.assert_allclose(s.column("bright"), ref["bright"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(s.column("redder"), ref["redder"], rtol=1e-5, atol=1e-6)
    assert s.binary == (False, True)


def test_plain_function_plugs_in_as_extractor():
    gen = toy_generator()
    s = sample(gen, [toy_scores], num=64, seed=0, batch_size=32, progress=False)
    assert s.names == ("bright", "redder")


def test_a_custom_extractors_raw_is_its_function_on_the_images():
    gen, ext = toy_generator(), toy_extractor()
    images = np.asarray(gen(gen.sample_latents(jax.random.key(0), 3)))
    ref = toy_scores(images)
    np.testing.assert_allclose(np.asarray(ext.raw(images)),
                               np.stack([ref["bright"], ref["redder"]], 1), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"raw input must be preprocessed float32 of shape "
                                         r"\[N, C, H, W\], got shape \(3, 8\)"):
        ext.raw(images[:, 0, :, 0])


@pytest.mark.slow
def test_four_devices_equal_one_device(tmp_path):
    script = textwrap.dedent("""
        import sys, jax, numpy as np
        from tlgan_jax.sampling import Sampler
        from toy import toy_generator, toy_extractor
        assert len(jax.devices()) == 4, jax.devices()
        s = Sampler(toy_generator(), [toy_extractor()], batch_size=64)
        assert s.mesh.devices.size == 4
        r = s.run(seed=5, num=700, shard_size=256, progress=False)
        np.savez(sys.argv[1], z=r.z, y=r.y)
    """)
    out = tmp_path / "four.npz"
    subprocess.run([sys.executable, "-c", script, str(out)], check=True, timeout=300,
                   env=_child_env(XLA_FLAGS="--xla_force_host_platform_device_count=4",
                                  JAX_PLATFORMS="cpu"))
    four = np.load(out)
    one = sample(toy_generator(), [toy_extractor()], num=700, seed=5, batch_size=64,
                 shard_size=256, progress=False)
    np.testing.assert_array_equal(four["z"], one.z)
    np.testing.assert_allclose(four["y"], one.y, rtol=1e-6, atol=1e-6)


CPU_FORM_SCRIPT = textwrap.dedent("""
    import sys, jax, numpy as np
    from tlgan_jax import runtime
    print(runtime.configure(cpu_devices=2, compilation_cache=False))
    from tlgan_jax.extractors import load_extractor
    from tlgan_jax.generators import load_generator
    from tlgan_jax.sampling import Sampler, make_labeller
    gen, exts = load_generator("digiface64"), [load_extractor("gender"), load_extractor("age")]
    s = Sampler(gen, exts, batch_size=128)
    z = np.asarray(gen.sample_latents(jax.random.key(0), 150))   # one full batch, one padded
    label, params = make_labeller(gen, s.extractors)
    plain = jax.jit(label)(jax.device_put(params, jax.devices()[0]), z)
    np.savez(sys.argv[1], y=s.label(z), plain=np.asarray(plain), devices=s.mesh.devices.size,
             micro=s.micro_batch, batch=s.batch_size, options=repr(sorted(s.compiler_options)))
""")


def test_cpu_form_of_the_labeller_equals_the_plain_jit():
    """The embedded default labelled the CPU way (two devices, 32-row lax.map micro-batches,
    YNNPACK fusions off, single-threaded per device) equals jax.jit(label) on one device."""
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cpu.npz"
        subprocess.run([sys.executable, "-c", CPU_FORM_SCRIPT, str(out)], check=True,
                       timeout=600, env=_child_env(JAX_PLATFORMS="cpu"))
        r = np.load(out)
        y, plain = r["y"], r["plain"]
        assert (int(r["devices"]), int(r["micro"]), int(r["batch"])) == (2, 32, 128)
        assert "xla_cpu_multi_thread_eigen" in str(r["options"])
    assert y.shape == plain.shape == (150, 2)
    for j in range(2):                      # male logit, age in years
        assert rel_error(y[:, j], plain[:, j]) <= PARITY_TOL


def test_micro_batches_round_the_batch_up():
    gen, ext = toy_generator(), toy_extractor()
    one = jax.devices()[:1]
    assert Sampler(gen, [ext], batch_size=100, devices=one).batch_size == 128
    assert Sampler(gen, [ext], batch_size=100, devices=one, micro_batch=None).batch_size == 100
    assert Sampler(gen, [ext], batch_size=20, devices=one).micro_batch is None  # one step
    with pytest.raises(ValueError, match="micro_batch must be a positive integer"):
        Sampler(gen, [ext], micro_batch=0)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_with_jax_distributed_equal_one(tmp_path):
    script = textwrap.dedent("""
        import sys, jax, numpy as np
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        port, pid, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
        jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=2,
                                   process_id=pid)
        assert jax.process_count() == 2
        from tlgan_jax.sampling import Sampler
        from toy import toy_generator, toy_extractor
        r = Sampler(toy_generator(), [toy_extractor()], batch_size=64).run(
            seed=6, num=900, out_dir=out, shard_size=128, progress=False)
        np.savez(out + f"/result_{pid}.npz", z=r.z, y=r.y)
        jax.distributed.shutdown()
    """)
    port, out = _free_port(), str(tmp_path / "run")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(port), str(i), out],
                              env=_child_env(JAX_PLATFORMS="cpu")) for i in range(2)]
    for p in procs:
        assert p.wait(timeout=300) == 0
    one = sample(toy_generator(), [toy_extractor()], num=900, seed=6, batch_size=64,
                 shard_size=128, progress=False)
    for i in range(2):
        r = np.load(f"{out}/result_{i}.npz")
        np.testing.assert_array_equal(r["z"], one.z)
        np.testing.assert_allclose(r["y"], one.y, rtol=1e-6, atol=1e-6)
    manifest = json.loads(Path(out, "manifest.json").read_text())
    assert manifest["complete"] and len(manifest["shards"]) == 8


KILL_SCRIPT = textwrap.dedent("""
    import sys
    from tlgan_jax.sampling import Sampler
    from toy import toy_generator, toy_extractor
    gen = toy_generator(latent_dim=64, resolution=32, width=8)
    Sampler(gen, [toy_extractor()], batch_size=64).run(
        seed=7, num=int(sys.argv[2]), out_dir=sys.argv[1], shard_size=64, progress=False)
""")


@pytest.mark.slow
def test_resume_after_sigkill_gives_the_uninterrupted_data(tmp_path):
    run, num = tmp_path / "killed", 64 * 60
    p = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(run), str(num)],
                         env=_child_env(JAX_PLATFORMS="cpu"))
    deadline = time.time() + 240
    while time.time() < deadline and len(list(run.glob("shard_*.npz"))) < 3:
        time.sleep(0.01)
    p.send_signal(signal.SIGKILL)
    p.wait()
    done_before = len(list(run.glob("shard_*.npz")))
    assert 3 <= done_before < 60, "the child must be killed mid-run"
    manifest = json.loads((run / "manifest.json").read_text())
    assert not manifest["complete"]
    # debris of a killed writer and a damaged shard: neither may be read as data
    (run / ".shard_000050.npz.tmp-1").write_bytes(b"partial")
    (run / "shard_000001.npz").write_bytes((run / "shard_000001.npz").read_bytes()[:100])
    with pytest.raises(ShardStoreError, match="not complete"):
        load_samples(run)

    gen = toy_generator(latent_dim=64, resolution=32, width=8)
    resumed = Sampler(gen, [toy_extractor()], batch_size=64).run(
        seed=7, num=num, out_dir=run, shard_size=64, progress=False)
    clean = Sampler(gen, [toy_extractor()], batch_size=64).run(
        seed=7, num=num, out_dir=tmp_path / "clean", shard_size=64, progress=False)
    np.testing.assert_array_equal(resumed.z, clean.z)
    np.testing.assert_allclose(resumed.y, clean.y, rtol=1e-6, atol=1e-6)
    again = load_samples(run)
    np.testing.assert_array_equal(again.z, clean.z)


def test_reusing_a_directory_with_other_settings_is_refused(tmp_path):
    gen, ext = toy_generator(), toy_extractor()
    sample(gen, [ext], num=100, seed=0, out_dir=tmp_path, shard_size=50, progress=False)
    with pytest.raises(ShardStoreError, match="seed: 0 there vs 1 now"):
        sample(gen, [ext], num=100, seed=1, out_dir=tmp_path, shard_size=50, progress=False)
    # the bf16 fast path of the same generator gives other samples: not mixed in either
    fast = dataclasses.replace(gen, info={"dtype": "bfloat16"})
    with pytest.raises(ShardStoreError, match="generator_dtype: 'float32' there vs 'bfloat16'"):
        sample(fast, [ext], num=100, seed=0, out_dir=tmp_path, shard_size=50, progress=False)
    # a manifest written before the dtype was recorded still resumes
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    del manifest["generator_dtype"]
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    assert sample(gen, [ext], num=100, seed=0, out_dir=tmp_path, shard_size=50,
                  progress=False).z.shape == (100, gen.latent_dim)


def test_growing_a_run_reuses_its_complete_shards(tmp_path, monkeypatch):
    """16 -> 32 shards in one directory: shard i depends only on (seed, i), so the first run's
    complete shards are read back, only the new ones (and a partial last one) are computed,
    and the result equals a fresh run of the larger size."""
    gen, ext = toy_generator(), toy_extractor()
    small = sample(gen, [ext], num=150, seed=2, out_dir=tmp_path / "run", shard_size=50,
                   progress=False)
    computed = []
    write = ShardStore.write
    monkeypatch.setattr(ShardStore, "write",
                        lambda self, i, z, y: (computed.append(i), write(self, i, z, y)))
    grown = sample(gen, [ext], num=320, seed=2, out_dir=tmp_path / "run", shard_size=50,
                   progress=False)
    assert computed == [3, 4, 5, 6]                     # shards 0-2 were reused
    monkeypatch.undo()
    fresh = sample(gen, [ext], num=320, seed=2, out_dir=tmp_path / "fresh", shard_size=50,
                   progress=False)
    np.testing.assert_array_equal(grown.z, fresh.z)
    np.testing.assert_array_equal(grown.y, fresh.y)
    np.testing.assert_array_equal(grown.z[:150], small.z)
    # shrinking reads back the shards it needs; the partial last shard is recomputed
    shrunk = sample(gen, [ext], num=120, seed=2, out_dir=tmp_path / "run", shard_size=50,
                    progress=False)
    np.testing.assert_array_equal(shrunk.z, fresh.z[:120])
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["num"] == 120


def test_bad_latents_give_clear_errors():
    gen, ext = toy_generator(), toy_extractor()
    s = Sampler(gen, [ext], batch_size=8)
    with pytest.raises(ValueError, match="wrong latent size 5"):
        s.label(np.zeros((3, 5), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        s.label(np.full((3, 16), np.nan, np.float32))
    with pytest.raises(ValueError, match=r"shape \[N, 16\]"):
        gen(np.zeros((16,), np.float32))
    with pytest.raises(ValueError, match="at least one extractor"):
        Sampler(gen, [])
    with pytest.raises(ValueError, match="unique"):
        Sampler(gen, [ext, ext])
