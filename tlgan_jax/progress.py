"""A dependency-free progress line for long jobs: done/total, rate and ETA on stderr."""
from __future__ import annotations

import sys
import time


class Progress:
    """`with Progress(total, "sampling", unit="samples") as p: p.update(n)` prints
    `sampling  12288/65536 samples  1532.1 samples/s  ETA 35s` at most every `every` seconds."""

    def __init__(self, total: int, desc: str, unit: str = "it", every: float = 0.5,
                 stream=None, enabled: bool = True, initial: int = 0):
        self.total, self.desc, self.unit, self.every = total, desc, unit, every
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.done = self.initial = initial
        self.t0 = self._last = time.perf_counter()

    @property
    def rate(self) -> float:
        dt = time.perf_counter() - self.t0
        return (self.done - self.initial) / dt if dt > 0 else 0.0

    def update(self, n: int) -> None:
        self.done += n
        now = time.perf_counter()
        if now - self._last >= self.every or self.done >= self.total:
            self._last = now
            self._print()

    def _print(self, end: str = "\r") -> None:
        if not self.enabled:
            return
        rate = self.rate
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        eta_s = f"{eta:.0f}s" if eta != float("inf") else "?"
        self.stream.write(f"{self.desc}  {self.done}/{self.total} {self.unit}  "
                          f"{rate:.1f} {self.unit}/s  ETA {eta_s}   {end}")
        self.stream.flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._print(end="\n")
