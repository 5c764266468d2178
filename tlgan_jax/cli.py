"""Command lines from config dataclasses (configs as code), with one error policy.

A job is a `main(cfg)` and a config module (`configs/NAME.py`) whose `get_config()` returns a
frozen dataclass; the flags are generated from that dataclass, never declared by hand:

    # experiments/discover_axes.py
    def main(cfg): ...
    if __name__ == "__main__":
        cli.run(main, cli.repo_config(__file__), doc=__doc__)

Flags, one per field (`flag(default, help, **checks)` gives a field its help and checks):
  name     the field's name: --num_samples=1024 or --num_samples 1024; booleans --fast/--nofast
  type     from the annotation: bool, int, float, str, `str | None`, tuple[str | int | float,
           ...] (a comma-separated list, e.g. --extractors=gender,age)
  default  the value in `get_config()` (shown by --help)
  --config=PATH.py   another config module returning the same dataclass: its values become the
                     defaults; flags given on the command line still win
  --verbosity=N      absl logging level: 0 INFO (default), -1 warnings only, 1 also the
                     traceback of a user error
  --help             every flag with its default, exit status 0

Error policy (`run`): the config is built and validated (`cfg.validate()`: every field, and
the files that must exist) before `main` runs, so a bad flag never waits for a model to load.
A user error (a bad flag value, a missing or unreadable file, an unknown name, a directory
holding another run, a missing optional package) prints one line on stderr,
`PROG: --flag=value: what is wrong and what to do`, and exits with status 2, without a
traceback (with --verbosity=1, the traceback too). Anything else is a bug: traceback, status 1.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import logging as py_logging
import math
import os
import sys
import traceback
import types
import typing
from pathlib import Path
from typing import Any, Callable, Sequence

from absl import flags, logging

from tlgan_jax import extractors as _extractors
from tlgan_jax import generators as _generators
from tlgan_jax.axes import Axes, models_named_by_axes
from tlgan_jax.bench.throughput import PeerError
from tlgan_jax.invert import PhotoError
from tlgan_jax.store import ShardStoreError
from tlgan_jax.train.celeba import CelebANotFoundError

USAGE_ERROR = 2            # exit status of a user error (as argparse and absl's usage errors)
_HELP = ("--help", "-h", "-?", "--helpshort", "--helpfull")
_CHECKS = ("min", "gt", "max", "choices", "nonempty", "needs")


class UserError(Exception):
    """A mistake of the user's (not a bug): `run` prints it as one line, exit status 2."""


class ConfigError(UserError, ValueError):
    """A flag (config field) with a bad value: `--name=value: message`."""

    def __init__(self, name: str, message: str, value: Any = dataclasses.MISSING):
        self.name, self.message, self.value = name, message, value
        shown = "" if value is dataclasses.MISSING else f"={_show(value)}"
        super().__init__(f"--{name}{shown}: {message}")


# Library exceptions that are the user's to fix; `run` prints them like a UserError.
USER_ERRORS = (UserError, ShardStoreError, PhotoError, CelebANotFoundError, PeerError,
               ModuleNotFoundError)


# ----------------------------------------------------------------------------- fields

def flag(default: Any, help: str, **checks) -> Any:
    """A config field that becomes a flag. checks (all optional): min / gt / max (numbers, or
    each element of a tuple), choices (allowed values, or elements), nonempty (bool),
    needs (names of fields that must be set when this flag is given on the command line)."""
    unknown = set(checks) - set(_CHECKS)
    if unknown:
        raise TypeError(f"flag(): unknown check(s) {sorted(unknown)}; known: {_CHECKS}")
    return dataclasses.field(default=default, metadata={"help": help, **checks})


def generator_flag(default: str = _generators.EMBEDDED_GENERATOR) -> Any:
    """The --generator field every job shares."""
    return flag(default, "Generator: digiface64 (embedded default, 64x64 DCGAN), "
                "pggan:PATH.pkl (NVIDIA's official pg-GAN pickle; see the README), "
                "stylegan2:PATH.pkl (NVIDIA's official StyleGAN2 pickle), or pggan1024 / "
                "stylegan2-1024 (random weights, benchmarks).")


def extractors_flag(default: Sequence[str] = _extractors.EMBEDDED_EXTRACTORS, *,
                    nonempty: bool = True) -> Any:
    """The --extractors field every job shares."""
    return flag(tuple(default), "Extractors, comma-separated: gender, age, emotion, "
                "fa_age_gender, fa_expression (embedded), celeba40:CHECKPOINT_DIR (trained by "
                "experiments/train_celeba_extractor.py), celeba40-random (random weights, "
                "benchmarks).", nonempty=nonempty)


def judges_flag() -> Any:
    """The --judges field of the jobs that score edits (see `check_judges`)."""
    return flag(("auto",), "Extractors that only judge the edits (independent of the axes' "
                "nets): auto = every embedded family that defined no axis (Cydral/FER <-> "
                "face-api), none, or names as for --extractors.", nonempty=True)


def identity_flag(default: str = "faceapi",
                  help: str = "Face descriptor for the identity-kept figures (faceapi), or "
                              "none.") -> Any:
    """The --identity field of the jobs that score edits: a face descriptor or none."""
    return flag(default, help, choices=("faceapi", "none"))


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(_show(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return "" if value is None else str(value)


def _kind(annotation) -> tuple[type, bool, bool]:
    """(scalar type, is a tuple, may be None) of a field annotation."""
    optional = False
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        optional = len(rest) < len(args)
        if len(rest) != 1:
            raise TypeError(f"unsupported config annotation {annotation}")
        annotation = rest[0]
        origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is tuple:
        if len(args) != 2 or args[1] is not Ellipsis or args[0] not in (str, int, float):
            raise TypeError(f"unsupported config annotation {annotation}: use tuple[T, ...]")
        return args[0], True, optional
    if annotation not in (bool, int, float, str):
        raise TypeError(f"unsupported config annotation {annotation}")
    return annotation, False, optional


def _fields(cls) -> list[tuple[dataclasses.Field, type, bool, bool]]:
    hints = typing.get_type_hints(cls)
    return [(f, *_kind(hints[f.name])) for f in dataclasses.fields(cls)]


def check_fields(cfg) -> None:
    """Type, finiteness and the `flag()` checks of every field; ConfigError naming the first
    bad one."""
    for f, scalar, is_tuple, optional in _fields(type(cfg)):
        value, meta = getattr(cfg, f.name), f.metadata
        if value is None:
            if not optional:
                raise ConfigError(f.name, "must be given", value)
            continue
        items = value if is_tuple else (value,)
        if is_tuple and not isinstance(value, tuple):
            raise ConfigError(f.name, f"must be a list of {scalar.__name__}", value)
        if meta.get("nonempty") and not value:
            raise ConfigError(f.name, "must not be empty", value)
        for v in items:
            ok = (isinstance(v, scalar) and not (scalar is int and isinstance(v, bool))) or (
                scalar is float and isinstance(v, int) and not isinstance(v, bool))
            if not ok:
                raise ConfigError(f.name, f"must be {'a list of ' if is_tuple else 'a'} "
                                  f"{scalar.__name__}, got {type(v).__name__}", value)
            if scalar in (int, float):
                if not math.isfinite(v):
                    raise ConfigError(f.name, "must be a finite number", value)
                if "min" in meta and v < meta["min"]:
                    raise ConfigError(f.name, f"must be at least {meta['min']:g}", value)
                if "gt" in meta and not v > meta["gt"]:
                    raise ConfigError(f.name, f"must be greater than {meta['gt']:g}", value)
                if "max" in meta and v > meta["max"]:
                    raise ConfigError(f.name, f"must be at most {meta['max']:g}", value)
            if "choices" in meta and v not in meta["choices"]:
                raise ConfigError(f.name, f"{_show(v)!r} is not one of "
                                  f"{', '.join(map(str, meta['choices']))}", value)


# ----------------------------------------------------------------------------- common checks

def check_generator(name: str, field: str = "generator", *,
                    latent_space: str | None = None) -> None:
    """The generator name is known and its file, if it names one, exists (nothing loaded);
    with `latent_space` w or w+, it is a style-based generator (StyleGAN2) that has one."""
    try:
        _generators.check_name(name)
    except (ValueError, OSError) as e:   # the readers name the file: said once here
        path = name.partition(":")[2]
        raise ConfigError(field, str(e).removeprefix(f"{path}: "), name) from None
    if latent_space not in (None, "z") and not _generators.is_stylegan2(name):
        raise ConfigError("latent_space", f"{name} has only a z space (W and W+ belong to "
                          f"style-based generators: stylegan2:PATH.pkl, stylegan2-1024); use "
                          f"--latent_space=z", latent_space)


def check_extractors(names: Sequence[str], field: str = "extractors") -> None:
    """Every extractor name is known and its checkpoint, if it names one, exists."""
    for name in names:
        try:
            _extractors.check_name(name)
        except (ValueError, OSError) as e:
            raise ConfigError(field, str(e), tuple(names)) from None


def models_for_axes(metadata: dict, path: str | None, generator: str | None = None,
                    extractors: Sequence[str] | None = None) -> tuple[str, list[str]]:
    """`axes.models_named_by_axes` for the axes file given with --axes, its refusal (a model
    that reads a file, which only the user may name) a ConfigError on --axes."""
    try:
        return models_named_by_axes(metadata, path or "the default axes", generator, extractors)
    except ValueError as e:
        raise ConfigError("axes", str(e).removeprefix(f"{path}: "), path) from None


def check_judges(judges: Sequence[str], field: str = "judges") -> None:
    """--judges is auto, none, or extractor names (`check_extractors`)."""
    if set(judges) & {"auto", "none"}:
        if len(judges) > 1:
            raise ConfigError(field, "auto and none stand alone; or list extractor names",
                              tuple(judges))
    else:
        check_extractors(judges, field)


def check_file(path: str | None, field: str, what: str = "file") -> None:
    """`path` (if given) is an existing, readable regular file."""
    if not path:
        return
    p = Path(path).expanduser()
    if not p.exists():
        raise ConfigError(field, f"no such {what}", path)
    if not p.is_file():
        raise ConfigError(field, f"not a regular file (a directory?); give the {what}", path)
    if not os.access(p, os.R_OK):
        raise ConfigError(field, f"the {what} is not readable (permissions)", path)


def check_output_dir(path: str | None, field: str) -> None:
    """`path` (if given) is a directory or can be created as one."""
    if not path:
        return
    p = Path(path).expanduser().absolute()
    if p.exists() and not p.is_dir():
        raise ConfigError(field, "exists and is not a directory; give a directory", path)
    parent = p
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(field, f"cannot be created: {parent} is not a writable directory",
                          path)


def check_output_file(path: str | None, field: str) -> None:
    """`path` (if given) can be written: not a directory, its folder can be created."""
    if not path:
        return
    p = Path(path).expanduser()
    if p.is_dir():
        raise ConfigError(field, "is a directory; give a file name", path)
    check_output_dir(str(p.absolute().parent), field)


def check_axes(path: str, field: str = "axes", **names: Sequence[str]) -> Axes:
    """The axes file read (no model loaded); names: {flag: attribute names that must be among
    its axes}, e.g. check_axes(cfg.axes, lock=cfg.lock)."""
    check_file(path, field, "axes file")
    try:
        axes = Axes.load(Path(path).expanduser())
    except (ValueError, OSError) as e:           # Axes.load names the file: said once here
        message = str(e).removeprefix(f"{Path(path).expanduser()}: ")
        raise ConfigError(field, message, path) from None
    for flag_name, wanted in names.items():
        unknown = [n for n in wanted if n not in axes.names]
        if unknown:
            raise ConfigError(flag_name, f"{unknown} not among the axes of {path}: "
                              f"{', '.join(axes.names)}", tuple(wanted))
    return axes


def check_latents(axes: Axes, gen, field: str = "axes", value: Any = dataclasses.MISSING):
    """The axes live in gen's latent space, the same space (z, w, w+) and size (ConfigError
    naming `field` otherwise)."""
    try:
        axes.check_generator(gen)
    except ValueError as e:
        raise ConfigError(field, str(e), value) from None


def load_latents(path: str, gen, field: str = "latents"):
    """Latents [N, d] for `gen` from a .npy file (memory-mapped first, so a header that claims
    more data than the file holds is refused before anything is allocated)."""
    import numpy as np
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
        if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "fiu":
            raise ValueError("not a numeric .npy array")
        return gen.check_latents(np.array(arr, np.float32))
    except (ValueError, OSError) as e:
        raise ConfigError(field, f"{e}; give a .npy of shape [N, {gen.latent_dim}] "
                          f"(np.save)", path) from None


def load_models(generator: str | None, extractors: Sequence[str] = (), *, fast: bool = False,
                field: str = "extractors"):
    """(generator or None, [extractors]) by name; a file that cannot be read is a ConfigError
    naming --generator or --`field` (the extractors' flag)."""
    gen = None
    if generator:
        try:
            gen = _generators.load_generator(generator, fast=fast)
        except (ValueError, OSError) as e:
            raise ConfigError("generator", str(e), generator) from e
    exts = []
    for name in extractors:
        try:
            exts.append(_extractors.load_extractor(name))
        except (ValueError, OSError) as e:
            raise ConfigError(field, f"{name}: {e}", tuple(extractors)) from e
    return gen, exts


def load_judges(spec: Sequence[str], extractor_names: Sequence[str], extractors: Sequence[Any],
                identity: str) -> tuple[list, Any]:
    """(judges, face descriptor or None) for --judges / --identity (`judges_flag`,
    `identity_flag`) of a job whose axes come from `extractors` (loaded from
    `extractor_names`); with auto, only judges scoring some attribute of theirs."""
    from tlgan_jax.discover import judges_to_load, relevant_judges
    _, judges = load_models(None, judges_to_load(spec, extractor_names), field="judges")
    descriptor = None if identity == "none" else _extractors.load_face_descriptor(identity)
    return relevant_judges(judges, extractors, spec), descriptor


def subset(cfg, cls, **changes):
    """An instance of dataclass `cls` from the fields of `cfg` with the same names."""
    names = {f.name for f in dataclasses.fields(cls)}
    values = {k: getattr(cfg, k) for k in names if hasattr(cfg, k)}
    values.update(changes)
    return cls(**values)


# ----------------------------------------------------------------------------- configs

def repo_config(script: str) -> Path:
    """configs/<name>.py of the repository holding experiments/<name>.py."""
    p = Path(script).resolve()
    return p.parents[1] / "configs" / f"{p.stem}.py"


def load_config_module(path: str | Path, field: str = "config") -> types.ModuleType:
    """Import a config module from its file (configs/ is not a package on sys.path)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(field, "no such config file (a .py with get_config())", str(path))
    name = f"tlgan_jax_configs.{p.stem}_{abs(hash(str(p.resolve()))):x}"
    spec = importlib.util.spec_from_file_location(name, p)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module              # dataclasses resolve annotations through it
    spec.loader.exec_module(module)
    if not callable(getattr(module, "get_config", None)):
        raise ConfigError(field, "has no get_config() function", str(path))
    return module


def _define(fv: flags.FlagValues, cfg, module: str) -> None:
    for f, scalar, is_tuple, _ in _fields(type(cfg)):
        default, meta = getattr(cfg, f.name), f.metadata
        help_ = meta.get("help", "")
        kw = dict(flag_values=fv, module_name=module)
        if is_tuple:
            flags.DEFINE_list(f.name, [_show(v) for v in default], help_, **kw)
        elif scalar is bool:
            flags.DEFINE_bool(f.name, default, help_, **kw)
        elif scalar is int:
            flags.DEFINE_integer(f.name, default, help_, **kw)
        elif scalar is float:
            flags.DEFINE_float(f.name, default, help_, **kw)
        elif "choices" in meta and default is not None:
            flags.DEFINE_enum(f.name, default, list(meta["choices"]), help_, **kw)
        else:
            flags.DEFINE_string(f.name, default, help_, **kw)


def _convert(f: dataclasses.Field, scalar: type, is_tuple: bool, raw: Any) -> Any:
    if not is_tuple:
        return raw
    out = []
    for item in raw:
        try:
            out.append(scalar(item.strip()) if scalar is not str else item.strip())
        except ValueError:
            raise ConfigError(f.name, f"{item!r} is not a{'n' if scalar is int else ''} "
                              f"{ {int: 'integer', float: 'number'}[scalar]}",
                              ",".join(raw)) from None
    return tuple(out)


def parse(config: str | Path | Callable[[], Any], argv: Sequence[str], *,
          prog: str | None = None, doc: str | None = None):
    """The validated config for command line `argv` (argv[0] is the program), or
    SystemExit(0) after --help. Raises UserError (ConfigError) for bad flags."""
    prog = prog or Path(argv[0]).name
    get_config = config if callable(config) else load_config_module(config).get_config
    base = get_config()
    fv = flags.FlagValues()
    _define(fv, base, prog)
    flags.DEFINE_string("config", None if callable(config) else str(config),
                        "Config module (a .py whose get_config() returns this script's config "
                        "dataclass): its values are the defaults; flags given here win.",
                        flag_values=fv, module_name="general")
    flags.DEFINE_integer("verbosity", 0, "Logging: -1 warnings only, 0 INFO, 1 also the "
                         "traceback of a user error (exit status 2).", short_name="v",
                         flag_values=fv, module_name="general")
    args = list(argv)
    cut = args.index("--") if "--" in args else len(args)
    if any(a in _HELP or a.startswith("--help") for a in args[1:cut]):
        print(_help(fv, prog, doc, full="--helpfull" in args[1:cut]))
        raise SystemExit(0)
    try:
        rest = fv(args)
    except flags.Error as e:
        raise UserError(f"{' '.join(str(e).split())}; see --help") from None
    if len(rest) > 1:
        raise UserError(f"unexpected argument(s) {rest[1:]}: every input is a flag, e.g. "
                        f"--name=value; see --help")
    _setup_logging(fv["verbosity"].value)
    if fv["config"].present:
        base = load_config_module(fv["config"].value).get_config()
        if {f.name for f in dataclasses.fields(base)} != {
                f.name for f in dataclasses.fields(type(get_config()))}:
            raise ConfigError("config", f"get_config() returns a {type(base).__name__} with "
                              f"other fields than this script's config", fv["config"].value)
    changes = {}
    given = set()
    for f, scalar, is_tuple, _ in _fields(type(base)):
        if fv[f.name].present:
            changes[f.name] = _convert(f, scalar, is_tuple, fv[f.name].value)
            given.add(f.name)
    cfg = dataclasses.replace(base, **changes) if changes else base
    for f, *_ in _fields(type(cfg)):
        for other in f.metadata.get("needs", ()):
            if f.name in given and not getattr(cfg, other):
                raise ConfigError(f.name, f"needs --{other} (it has no effect without it)",
                                  getattr(cfg, f.name))
    check_fields(cfg)
    if hasattr(cfg, "validate"):
        cfg.validate()
    return cfg


def _help(fv: flags.FlagValues, prog: str, doc: str | None, full: bool) -> str:
    text = (doc or "").strip() + "\n\nFlags (the defaults come from --config):\n"
    text += fv.module_help(prog) + "\n" + fv.module_help("general")
    if full:
        text += "\n\nabsl flags:\n" + flags.FLAGS.get_help()
    return text


def _setup_logging(verbosity: int) -> None:
    """absl logging as `app.run` sets it up; jax's backend probing (libtpu) stays quiet."""
    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()
    logging.use_absl_handler()
    logging.set_verbosity(verbosity)
    if verbosity < 1:
        py_logging.getLogger("jax._src.xla_bridge").setLevel(py_logging.WARNING)


def run(main: Callable[[Any], Any], config: str | Path | Callable[[], Any], *,
        argv: Sequence[str] | None = None, doc: str | None = None,
        prog: str | None = None) -> None:
    """Parse and validate the flags (see module doc), run main(cfg), exit: 0 done, 2 user
    error (one line on stderr), 1 bug (traceback), 130 interrupted."""
    argv = list(sys.argv if argv is None else argv)
    prog = prog or Path(argv[0]).name
    debug = any(a in ("--verbosity=1", "-v=1", "--verbosity=2") for a in argv)
    try:
        cfg = parse(config, argv, prog=prog, doc=doc)
        debug = logging.get_verbosity() >= 1
        code = main(cfg)
    except USER_ERRORS as e:
        if debug:
            traceback.print_exc()
        print(f"{prog}: {_message(e)}", file=sys.stderr, flush=True)
        raise SystemExit(USAGE_ERROR) from None
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr, flush=True)
        raise SystemExit(130) from None
    raise SystemExit(code or 0)


def _message(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    if isinstance(e, ModuleNotFoundError) and text.startswith("No module named"):
        text += " (an optional dependency: see the README's install lines)"
    return text


__all__ = ["ConfigError", "USAGE_ERROR", "USER_ERRORS", "UserError", "check_axes",
           "check_extractors", "check_fields", "check_file", "check_generator", "check_latents",
           "check_output_dir", "check_output_file", "extractors_flag", "flag", "generator_flag",
           "load_latents", "load_config_module", "load_models",
           "parse", "repo_config", "run", "subset"]
