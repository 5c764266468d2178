"""Hostile files for the reader tests: hand-written pickle streams (any stream a file could
hold, written without importing what it names), and a harness that loads a file in a fresh
Python process and reports how it ended and how much memory it took.

`dumps(obj)` pickles plain values as usual and these markers opcode by opcode:
  Global(m, n)          GLOBAL 'm n'                 (never imported while writing)
  Call(f, args)         f args REDUCE                (unpickling calls f(*args))
  NewObj(cls, args)     cls args NEWOBJ              (cls.__new__(cls, *args))
  Build(obj, state)     obj state BUILD              (obj.__setstate__(state) or __dict__ update)
  Storage(type, k, n)   persistent id ('storage', torch.<type>, k, 'cpu', n)
  Opcodes(raw)          raw bytes written verbatim
Every marker is memoised, so one referenced twice is written once and then fetched (BINGET),
as a real pickler does for shared objects.
"""
import io
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

NUMPY_MULTIARRAY = "numpy.core.multiarray"   # the spelling of NumPy 1 (official pickles)


class Global:
    def __init__(self, module, name):
        self.module, self.name = module, name


class Call:
    def __init__(self, func, args):
        self.func, self.args = func, tuple(args)


class NewObj:
    def __init__(self, cls, args=()):
        self.cls, self.args = cls, tuple(args)


class Build:
    def __init__(self, obj, state):
        self.obj, self.state = obj, state


class Storage:
    def __init__(self, type_name, key, numel):
        self.pid = ("storage", Global("torch", type_name), key, "cpu", numel)


class Opcodes:
    def __init__(self, raw: bytes):
        self.raw = raw


class CraftPickler(pickle._Pickler):
    dispatch = dict(pickle._Pickler.dispatch)

    def _save_global(self, obj):
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
        self.memoize(obj)

    def _save_call(self, obj):
        self.save(obj.func)
        self.save(obj.args)
        self.write(pickle.REDUCE)
        self.memoize(obj)

    def _save_newobj(self, obj):
        self.save(obj.cls)
        self.save(obj.args)
        self.write(pickle.NEWOBJ)
        self.memoize(obj)

    def _save_build(self, obj):
        self.save(obj.obj)
        self.save(obj.state)
        self.write(pickle.BUILD)
        self.memoize(obj)

    def _save_opcodes(self, obj):
        self.write(obj.raw)

    dispatch[Global] = _save_global
    dispatch[Call] = _save_call
    dispatch[NewObj] = _save_newobj
    dispatch[Build] = _save_build
    dispatch[Opcodes] = _save_opcodes

    def persistent_id(self, obj):
        return obj.pid if isinstance(obj, Storage) else None


def dumps(obj, protocol: int = 2) -> bytes:
    buf = io.BytesIO()
    CraftPickler(buf, protocol=protocol).dump(obj)
    return buf.getvalue()


# --- NumPy's own pickle forms, as official pickles hold them -----------------------------------
def np_dtype(name: str, state: tuple | None = None):
    """dtype(name, False, True) + BUILD state (NumPy's form); default state: plain little-endian."""
    order = "|" if np.dtype(name).itemsize == 1 else "<"
    state = state if state is not None else (3, order, None, None, None, -1, -1, 0)
    return Build(Call(Global("numpy", "dtype"), (name, False, True)), state)


def np_array(shape, dtype, raw: bytes, fortran: bool = False, module: str = NUMPY_MULTIARRAY):
    """_reconstruct(ndarray, (0,), b'b') + BUILD (1, shape, dtype, is_fortran, raw)."""
    empty = Call(Global(module, "_reconstruct"), (Global("numpy", "ndarray"), (0,), b"b"))
    return Build(empty, (1, tuple(shape), dtype, fortran, raw))


def np_of(a: np.ndarray):
    """NumPy's own pickle form of array `a` (little-endian, C order)."""
    a = np.asarray(a)
    a = a.astype(a.dtype.newbyteorder("<"))
    return np_array(a.shape, np_dtype(a.dtype.str[1:]), a.tobytes(order="C"))


def np_scalar(dtype, raw: bytes, module: str = NUMPY_MULTIARRAY):
    """scalar(dtype, raw): a NumPy scalar (0-d value)."""
    return Call(Global(module, "scalar"), (dtype, raw))


def tf_network(state: dict):
    """A pickled `tfutil.Network` with its state dict (NEWOBJ + BUILD, as TF pickles it)."""
    return Build(NewObj(Global("tfutil", "Network")), state)


# --- loading in a fresh process ----------------------------------------------------------------
_HARNESS = """
import sys
sys.path[:0] = {paths!r}
{setup}
def _status(key):
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith(key + ":")) / 1024
try:   # reset the peak-RSS mark (Linux >= 4.0); else the peak so far is the base
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    _base = _status("VmRSS")
except OSError:
    _base = _status("VmHWM")
try:
{body}
finally:
    print("PEAK_RSS_GROWTH_MIB", _status("VmHWM") - _base, flush=True)
"""


class Isolated:
    """How a snippet run by `run_isolated` ended: returncode (negative: killed by that signal),
    the last line of stderr (the exception, if one escaped) and the peak RSS growth in MiB
    while the body ran (imports in `setup` excluded)."""

    def __init__(self, proc: subprocess.CompletedProcess):
        self.returncode = proc.returncode
        lines = proc.stderr.strip().splitlines()
        self.error = lines[-1] if lines else ""
        growth = [line.split()[1] for line in proc.stdout.splitlines()
                  if line.startswith("PEAK_RSS_GROWTH_MIB")]
        self.rss_growth_mib = float(growth[-1]) if growth else float("nan")
        self.stdout, self.stderr = proc.stdout, proc.stderr

    def __repr__(self):
        return (f"Isolated(returncode={self.returncode}, error={self.error!r}, "
                f"rss_growth_mib={self.rss_growth_mib:.1f})")


def run_isolated(body: str, setup: str = "", timeout: float = 300) -> Isolated:
    """Run `setup` then `body` (Python source) in a fresh interpreter that imports tlgan_jax
    from the same place as this process, so a crash or a runaway allocation cannot take the
    test process with it."""
    import tlgan_jax
    paths = [str(Path(tlgan_jax.__file__).resolve().parents[1]), str(Path(__file__).parent)]
    program = _HARNESS.format(paths=paths, setup=textwrap.dedent(setup),
                              body=textwrap.indent(textwrap.dedent(body), "    "))
    env = {**os.environ, "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu")}
    proc = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                          timeout=timeout, env=env)
    return Isolated(proc)


class SystemCall:
    """Pickles as a call of os.system(cmd): what a hostile pickle does to run code."""

    def __init__(self, cmd):
        self.cmd = cmd

    def __reduce__(self):
        import os
        return os.system, (self.cmd,)
