"""Where and under what load a benchmark ran (for its report)."""
from __future__ import annotations

import os
import platform
import resource

import jax


def machine_info() -> dict:
    """Where a benchmark ran: platform, CPU count, JAX backend and devices."""
    return {"platform": platform.platform(), "processor": platform.processor(),
            "cpu_count": os.cpu_count(), "backend": jax.default_backend(),
            "devices": [str(d) for d in jax.devices()],
            "device_kind": jax.devices()[0].device_kind, "jax_version": jax.__version__}


def load1() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def machine_line() -> str:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return (f"{os.cpu_count()} CPU cores, JAX backend {jax.default_backend()} "
            f"({jax.devices()[0].device_kind}); load average {load[0]:.2f} / {load[1]:.2f} / "
            f"{load[2]:.2f} (1 / 5 / 15 min)")
