"""runtime.configure: CPU devices chosen before JAX starts, a versioned persistent compilation
cache that a second process reads back, and only compiler options this jaxlib knows."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jaxlib
import pytest

from tlgan_jax import runtime

ROOT = Path(__file__).resolve().parents[1]


def _run(script: str, *args, **env) -> dict:
    full_env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu", **env)
    full_env.pop("TLGAN_JAX_CPU_DEVICES", None)
    full_env.pop("TLGAN_JAX_COMPILATION_CACHE", None)
    full_env.update(env)
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(script), *args], check=True,
                         capture_output=True, text=True, timeout=300, env=full_env).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_cache_dir_changes_with_the_package_jax_and_jaxlib_versions(monkeypatch, tmp_path):
    monkeypatch.setenv("TLGAN_JAX_CACHE", str(tmp_path))
    a = runtime.compilation_cache_dir("0.1.0")
    assert a.parent == tmp_path / "xla"
    assert a != runtime.compilation_cache_dir("0.1.1")
    assert runtime.compilation_cache_dir() == runtime.compilation_cache_dir(
        __import__("tlgan_jax").__version__)
    monkeypatch.setattr(jax, "__version__", "9.9.9")
    b = runtime.compilation_cache_dir("0.1.0")
    monkeypatch.setattr(jaxlib, "__version__", "9.9.9")
    c = runtime.compilation_cache_dir("0.1.0")
    assert len({a, b, c}) == 3


def test_version_is_single_sourced():
    import tomllib

    import tlgan_jax
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "tlgan_jax.__version__"}
    assert tlgan_jax.__version__.count(".") == 2


CONFIGURE = """
    import json, jax, jax.numpy as jnp
    from tlgan_jax import runtime
    state = runtime.configure()
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    hits = []
    jax.monitoring.register_event_listener(
        lambda name, **kw: hits.append(name) if name.endswith("cache_hits") else None)
    f = jax.jit(lambda x: jnp.tanh(x @ x.T).sum() * 3.0)
    f(jnp.ones((17, 5))).block_until_ready()
    print(json.dumps(dict(state, devices=len(jax.devices()), hits=len(hits),
                          again=runtime.ensure_configured())))
"""


def test_configure_gives_a_device_per_core_and_a_cache_a_second_process_reads(tmp_path):
    first = _run(CONFIGURE, TLGAN_JAX_CACHE=str(tmp_path), TLGAN_JAX_CPU_DEVICES="3")
    assert first["cpu_devices"] == "3" and first["devices"] == 3
    cache = Path(first["compilation_cache_dir"])
    assert cache.parent == tmp_path / "xla" and any(cache.iterdir())
    assert first["hits"] == 0 and first["again"] == {k: first[k] for k in first["again"]}
    second = _run(CONFIGURE, TLGAN_JAX_CACHE=str(tmp_path), TLGAN_JAX_CPU_DEVICES="3")
    assert second["hits"] >= 1                         # compiled code read back, not rebuilt
    auto = _run(CONFIGURE, TLGAN_JAX_CACHE=str(tmp_path))
    assert auto["devices"] == runtime.usable_cores()
    off = _run(CONFIGURE, TLGAN_JAX_CACHE=str(tmp_path / "off"), TLGAN_JAX_COMPILATION_CACHE="0")
    assert off["compilation_cache_dir"] is None and not (tmp_path / "off" / "xla").exists()


def test_configure_respects_choices_made_before_it():
    forced = _run(CONFIGURE, XLA_FLAGS="--xla_force_host_platform_device_count=4",
                  TLGAN_JAX_COMPILATION_CACHE="0")
    assert forced["devices"] == 4 and "XLA_FLAGS" in forced["cpu_devices"]
    late = _run("""
        import json, jax, jax.numpy as jnp
        jnp.ones(3).block_until_ready()              # the backend is up before configure
        from tlgan_jax import runtime
        s = runtime.configure(cpu_devices=3, compilation_cache=False)
        print(json.dumps(dict(s, devices=len(jax.devices()))))
    """)
    assert late["devices"] == 1 and "already initialised" in late["cpu_devices"]


def test_bad_device_counts_are_refused(monkeypatch):
    monkeypatch.setenv("TLGAN_JAX_CPU_DEVICES", "many")
    with pytest.raises(ValueError, match=r"TLGAN_JAX_CPU_DEVICES\) must be 'auto'"):
        runtime._set_cpu_devices("auto")


def test_only_known_compiler_options_are_kept():
    opts = runtime.supported_compiler_options({"xla_cpu_multi_thread_eigen": False,
                                               "xla_no_such_option_anywhere": True})
    assert opts == {"xla_cpu_multi_thread_eigen": False}
