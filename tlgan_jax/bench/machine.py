"""Where and under what load a benchmark ran (for its report)."""
from __future__ import annotations

import os
import platform
import resource
from pathlib import Path
from typing import Sequence

import jax
import jaxlib

from tlgan_jax import runtime


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), else platform.processor()."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages (runnable threads; compare with the core count)."""
    return [round(x, 2) for x in os.getloadavg()]


def load_caveat(loads: Sequence[Sequence[float]]) -> str:
    """One line on the machine's load during a run, from the load averages recorded in it."""
    one_min = [load[0] for load in loads]
    return (f"1-minute load average {min(one_min):.1f}-{max(one_min):.1f} during the run on "
            f"{runtime.usable_cores()} usable cores: absolute rates and GFLOP/s are low and "
            f"noisy under load; the same-run ratios (ours/peer alternating, fraction of the "
            f"floor) are the figures")


def machine_info() -> dict:
    """Where a benchmark ran: CPU model and cores, platform, JAX backend and devices."""
    return {"cpu_model": cpu_model(), "cpu_count": os.cpu_count(),
            "usable_cores": runtime.usable_cores(), "platform": platform.platform(),
            "backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()],
            "device_kind": jax.devices()[0].device_kind, "jax_version": jax.__version__,
            "jaxlib_version": jaxlib.__version__}


def load1() -> float:
    return load_average()[0]


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def machine_line() -> str:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return (f"{os.cpu_count()} CPU cores ({cpu_model()}), JAX backend {jax.default_backend()} "
            f"({jax.devices()[0].device_kind}); load average {load[0]:.2f} / {load[1]:.2f} / "
            f"{load[2]:.2f} (1 / 5 / 15 min)")
