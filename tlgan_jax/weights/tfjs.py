"""Read TensorFlow.js weights (a weights manifest + its binary shards) as numpy float32 arrays.

Format (tfjs `io.WeightsManifestConfig`): a JSON list of groups
  [{"paths": ["shard1.bin", ...], "weights": [{"name", "shape", "dtype", "quantization"?}, ...]}]
(or a model.json whose "weightsManifest" holds that list). A group's shards, concatenated in
order, hold its weights back to back in row-major order. A weight of dtype float32 is stored as
4-byte little-endian floats, or quantised:
  {"dtype": "uint8" | "uint16", "scale": s, "min": m}: value = q * s + m (computed in float64,
      rounded to float32, as tfjs does);
  {"dtype": "float16"}: IEEE half floats.

Everything in the files is checked before anything is allocated from it: field types, names
(unique strings), dtypes (float32 only; other dtypes are refused), shapes (non-negative ints,
bounded element count), shard names (plain file names inside the manifest's directory, regular
files) and sizes (the bytes the shapes imply must equal the bytes present). Any violation raises
`TfjsFormatError` naming the file and field.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

MAX_MANIFEST_BYTES = 16 << 20
MAX_ELEMENTS = 1 << 28            # per weight
MAX_TOTAL_BYTES = 1 << 31         # per group, all shards together

_QUANT_BYTES = {"uint8": 1, "uint16": 2, "float16": 2}


class TfjsFormatError(ValueError):
    """The tfjs manifest or a shard is malformed, inconsistent or outside the supported subset."""


def _fail(where: str, msg: str):
    raise TfjsFormatError(f"{where}: {msg}")


def _load_manifest(path: Path) -> list:
    try:
        size = path.stat().st_size
    except OSError as e:
        raise TfjsFormatError(f"{path}: cannot read the manifest ({e})") from e
    if size > MAX_MANIFEST_BYTES:
        _fail(str(path), f"manifest is {size} bytes, more than {MAX_MANIFEST_BYTES}")
    try:
        doc = json.loads(path.read_bytes().decode("utf-8"))
    except (ValueError, RecursionError) as e:     # bad UTF-8 / JSON, huge ints, deep nesting
        raise TfjsFormatError(f"{path}: not a JSON weights manifest "
                              f"({type(e).__name__})") from None
    if isinstance(doc, dict):
        doc = doc.get("weightsManifest")
    if not isinstance(doc, list) or not doc:
        _fail(str(path), "expected a non-empty list of weight groups (or a model.json with "
                         "'weightsManifest')")
    return doc


def _shape(where: str, shape) -> tuple[int, ...]:
    if not isinstance(shape, list) or len(shape) > 8:
        _fail(where, f"'shape' must be a list of at most 8 ints, got {shape!r}")
    if not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= MAX_ELEMENTS
               for d in shape):
        _fail(where, f"'shape' {shape} has a negative, huge or non-integer dimension")
    if math.prod(shape) > MAX_ELEMENTS:
        _fail(where, f"'shape' {shape} has more than {MAX_ELEMENTS} elements")
    return tuple(shape)


def _spec(where: str, w) -> tuple[str, tuple[int, ...], str, float, float]:
    """(name, shape, storage dtype, scale, min) of one weight entry, checked."""
    if not isinstance(w, dict):
        _fail(where, f"a weight entry must be an object, got {type(w).__name__}")
    name = w.get("name")
    if not isinstance(name, str) or not name:
        _fail(where, f"weight 'name' must be a non-empty string, got {name!r}")
    where = f"{where} weight {name!r}"
    shape = _shape(where, w.get("shape"))
    if w.get("dtype") != "float32":
        _fail(where, f"dtype {w.get('dtype')!r} is not supported (float32 only)")
    q = w.get("quantization")
    if q is None:
        return name, shape, "float32", 1.0, 0.0
    if not isinstance(q, dict) or q.get("dtype") not in _QUANT_BYTES:
        _fail(where, f"quantization {q!r} is not supported (uint8, uint16 with scale/min, "
                     f"or float16)")
    if q["dtype"] == "float16":
        return name, shape, "float16", 1.0, 0.0
    scale, lo = q.get("scale"), q.get("min")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
               for v in (scale, lo)):
        _fail(where, f"quantization needs finite numbers 'scale' and 'min', got {q!r}")
    return name, shape, q["dtype"], float(scale), float(lo)


def _shard(where: str, root: Path, p) -> Path:
    if (not isinstance(p, str) or not p or "/" in p or "\\" in p or p in (".", "..")
            or p.startswith("~") or ":" in p):
        _fail(where, f"shard path {p!r} must be a plain file name in the manifest's directory")
    path = root / p
    if path.is_symlink() or not path.is_file():
        _fail(where, f"shard {p!r} is missing or not a regular file in {root}")
    return path


def read_tfjs_weights(manifest: str | os.PathLike) -> dict[str, np.ndarray]:
    """{weight name: float32 array} from a tfjs weights manifest (or model.json) and its shards
    in the same directory (see the module doc for the format and the checks)."""
    manifest = Path(manifest)
    root = manifest.parent
    out: dict[str, np.ndarray] = {}
    for gi, group in enumerate(_load_manifest(manifest)):
        where = f"{manifest} group {gi}"
        if not isinstance(group, dict) or not isinstance(group.get("paths"), list) \
                or not isinstance(group.get("weights"), list):
            _fail(where, "a group must be an object with lists 'paths' and 'weights'")
        shards = [_shard(where, root, p) for p in group["paths"]]
        specs = [_spec(where, w) for w in group["weights"]]
        need = sum(math.prod(shape) * (4 if kind == "float32" else _QUANT_BYTES[kind])
                   for _, shape, kind, _, _ in specs)
        have = sum(s.stat().st_size for s in shards)
        if need != have:
            _fail(where, f"the weights' shapes need {need} bytes but the shards "
                         f"{group['paths']} hold {have} (truncated or mismatched files)")
        if need > MAX_TOTAL_BYTES:
            _fail(where, f"the group needs {need} bytes, more than {MAX_TOTAL_BYTES}")
        data = b"".join(s.read_bytes() for s in shards)
        if len(data) != need:  # changed on disk between stat and read
            _fail(where, f"shards changed while being read ({len(data)} bytes, need {need})")
        offset = 0
        for name, shape, kind, scale, lo in specs:
            if name in out:
                _fail(where, f"weight name {name!r} appears twice")
            count = math.prod(shape)
            if kind == "float32":
                a = np.frombuffer(data, "<f4", count, offset)
                offset += 4 * count
            elif kind == "float16":
                a = np.frombuffer(data, "<f2", count, offset).astype(np.float32)
                offset += 2 * count
            else:
                q = np.frombuffer(data, "<u1" if kind == "uint8" else "<u2", count, offset)
                offset += q.itemsize * count
                a = (q.astype(np.float64) * scale + lo).astype(np.float32)
            out[name] = np.array(a, np.float32).reshape(shape)
    return out
