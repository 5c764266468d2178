"""Process-wide JAX set-up in one explicit place: `configure()`.

JAX reads some settings only once, when it first initialises its backends (the first array,
the first jit call); `configure()` makes those choices for tlgan_jax, before that moment:

  cpu_devices   one JAX CPU device per usable core (`jax_num_cpu_devices`), so that
                `Sampler` shards each batch over the cores and runs each shard single-threaded
                (XLA:CPU's small convolutions scale badly over threads; one independent stream
                per core does not). Other computations still run on CPU device 0 with all
                cores. Skipped, and reported, when the backends are already initialised or
                the user chose a count (`XLA_FLAGS=--xla_force_host_platform_device_count`,
                `jax_num_cpu_devices`, or $TLGAN_JAX_CPU_DEVICES).
  compilation_cache
                JAX's persistent compilation cache in `compilation_cache_dir()`, a directory
                under the weight cache named by the versions of tlgan_jax, jax and jaxlib, so
                a second run loads compiled executables instead of recompiling, and an upgrade
                never reads another version's entries. A directory the user already set
                (`jax_compilation_cache_dir`) is kept. $TLGAN_JAX_COMPILATION_CACHE=0 disables.

The library's entry points (`load_generator`, `load_extractor`, `Sampler`) call
`ensure_configured()`, which runs `configure()` with the defaults unless it already ran; call
`configure(...)` yourself first thing (before any other JAX work) to choose otherwise, e.g.
`configure(cpu_devices=1, compilation_cache=False)`. Nothing else is global.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import jax
import jaxlib

from tlgan_jax.weights.pinned import cache_dir

# Compilations faster than this are not written to the cache (their files would cost as much
# to read back as to recompile).
# (Measured: 0 instead of 0.2 did not make the editor's warm start faster.)
MIN_CACHED_COMPILE_S = 0.2

_state: dict | None = None


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def package_version() -> str:
    """tlgan_jax's version (`tlgan_jax.__version__`, the single source pyproject.toml reads)."""
    from tlgan_jax import __version__
    return __version__


def compilation_cache_dir(version: str | None = None) -> Path:
    """<weight cache>/xla/tlgan_jax-V_jax-V_jaxlib-V for this package version (default: the
    installed one) and the running jax/jaxlib: one directory per combination."""
    version = version or package_version()
    return cache_dir() / "xla" / (f"tlgan_jax-{version}_jax-{jax.__version__}"
                                  f"_jaxlib-{jaxlib.__version__}")


def _env_flag(name: str, default: str) -> str:
    return os.environ.get(name, default).strip().lower()


def _set_cpu_devices(cpu_devices) -> str:
    """Ask JAX for `cpu_devices` CPU devices ('auto': one per usable core); returns what
    happened, in words."""
    env = os.environ.get("TLGAN_JAX_CPU_DEVICES")
    if env is not None:
        cpu_devices = env.strip().lower()
    if cpu_devices is None or cpu_devices == "none":
        return "left to JAX (not requested)"
    if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return "left to JAX (XLA_FLAGS sets the host device count)"
    if jax.config.jax_num_cpu_devices != -1:
        return f"left to JAX (jax_num_cpu_devices already {jax.config.jax_num_cpu_devices})"
    if cpu_devices == "auto":
        n = usable_cores()
    else:
        try:
            n = int(cpu_devices)
        except (TypeError, ValueError):
            raise ValueError(f"cpu_devices (or $TLGAN_JAX_CPU_DEVICES) must be 'auto', 'none' "
                             f"or a positive integer, got {cpu_devices!r}") from None
        if n < 1:
            raise ValueError(f"cpu_devices (or $TLGAN_JAX_CPU_DEVICES) must be positive, got {n}")
    try:
        jax.config.update("jax_num_cpu_devices", n)
    except RuntimeError:     # JAX refuses once its backends exist
        return "left as is (JAX's backends were already initialised: call configure() first)"
    return f"{n}"


def _set_compilation_cache(enabled: bool) -> str | None:
    if not enabled or _env_flag("TLGAN_JAX_COMPILATION_CACHE", "1") in ("0", "false", "no"):
        return None
    current = jax.config.jax_compilation_cache_dir
    if current:
        return str(current)          # the user's choice
    path = compilation_cache_dir()
    path.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_CACHED_COMPILE_S)
    return str(path)


def configure(*, cpu_devices: int | str | None = "auto", compilation_cache: bool = True) -> dict:
    """Set up JAX for tlgan_jax (module doc); returns {'cpu_devices': what happened,
    'compilation_cache_dir': path or None}. Call before any other JAX work."""
    global _state
    _state = {"cpu_devices": _set_cpu_devices(cpu_devices),
              "compilation_cache_dir": _set_compilation_cache(compilation_cache)}
    return dict(_state)


def ensure_configured() -> dict:
    """`configure()` with the defaults, unless it already ran in this process."""
    return dict(_state) if _state is not None else configure()


@functools.cache
def _option_known(name: str, value: Any) -> bool:
    """Whether this jaxlib's compiler accepts `name=value` (compiles a trivial function)."""
    try:
        jax.jit(lambda x: x + 1).lower(1.0).compile(compiler_options={name: value})
        return True
    except Exception as e:  # jaxlib reports an unknown option as INVALID_ARGUMENT
        if "compile option" in str(e) or "INVALID_ARGUMENT" in str(e):
            return False
        raise


def supported_compiler_options(options: dict[str, Any]) -> dict[str, Any]:
    """The subset of XLA `options` this jaxlib knows (others are dropped, not an error)."""
    return {k: v for k, v in options.items() if _option_known(k, v)}
