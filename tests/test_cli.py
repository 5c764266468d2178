"""The command lines (tlgan_jax.cli, configs/, experiments/, the editor): flags generated from
the config dataclasses, every bad value refused before any model loads, as one line on stderr
with exit status 2; --help exits 0 and shows the defaults."""
import dataclasses
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tlgan_jax import cli
from tlgan_jax import extractors as extractors_pkg
from tlgan_jax import generators as generators_pkg
from tlgan_jax.axes import Axes

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ("discover_axes", "invert", "traverse", "benchmark_axis_quality",
           "benchmark_throughput", "train_celeba_extractor")


@pytest.fixture
def no_models(monkeypatch):
    """Every model loader records its call and fails: a test passes only if none ran."""
    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise AssertionError(f"a model was loaded: {args}")
    monkeypatch.setattr(generators_pkg, "load_generator", refuse)
    monkeypatch.setattr(extractors_pkg, "load_extractor", refuse)
    return calls


def run_cli(capsys, script: str, *args: str, main=None):
    """cli.run of experiments/<script>.py's config in this process: (exit status, stdout,
    stderr, configs main was called with)."""
    called = []
    with pytest.raises(SystemExit) as exit_info:
        cli.run(main or called.append, ROOT / "configs" / f"{script}.py",
                argv=[f"{script}.py", *args])
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err, called


@pytest.fixture
def axes_file(tmp_path):
    path = tmp_path / "axes.npz"
    Axes.from_vectors(np.eye(100, 3, dtype=np.float32), ("male", "age", "happy"),
                      metadata={"generator": "digiface64", "latent_dim": 100}).save(path)
    return path


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not an axes file\n")
    return path


def _cases(tmp: Path, axes: Path, text: Path):
    photo = tmp / "me.png"
    photo.write_bytes(b"\x89PNG")                       # exists; never decoded in these cases
    return [
        ("discover_axes", ["--extractors=gender,nope"], "--extractors=gender,nope: unknown"),
        ("discover_axes", ["--generator=pggan:/nonexistent/karras.pkl"],
         "--generator=pggan:/nonexistent/karras.pkl: cannot read the pg-GAN pickle"),
        ("discover_axes", ["--generator=stylegan2:/nonexistent/ffhq.pkl"],
         "--generator=stylegan2:/nonexistent/ffhq.pkl: no such StyleGAN2 pickle"),
        ("discover_axes", ["--latent_space=w"], "--latent_space=w: digiface64 has only a z space"),
        ("discover_axes", ["--latent_space=s"], "--latent_space=s: value should be one of"),
        ("discover_axes", ["--generator=stylegan9"], "--generator=stylegan9: unknown generator"),
        ("discover_axes", ["--eval_step=nan"], "--eval_step=nan: must be a finite number"),
        ("discover_axes", ["--traversal_steps=-1,nan"], "--traversal_steps=-1,nan: must be"),
        ("discover_axes", ["--traversal_steps=-1,x"], "--traversal_steps=-1,x: 'x' is not"),
        ("discover_axes", ["--logit_clip=nan"], "--logit_clip=nan: must be a finite number"),
        ("discover_axes", ["--combine=age_mix=age"], "--combine=age_mix=age: 'age_mix=age' is "
         "not NAME=SOURCE1,SOURCE2"),
        ("discover_axes", ["--num_samples=0"], "--num_samples=0: must be at least"),
        ("discover_axes", ["--num_samples=many"], "--num_samples=many"),
        ("discover_axes", ["--method=pca"], "--method=pca"),
        ("discover_axes", [f"--workdir={text}"], f"--workdir={text}: exists and is not a dir"),
        ("discover_axes", ["--no_such_flag=1"], "no_such_flag"),
        ("discover_axes", ["stray"], "unexpected argument"),
        ("discover_axes", ["--extractors=celeba40:/nonexistent"],
         "--extractors=celeba40:/nonexistent: no CelebA-40 extractor checkpoint"),
        ("invert", [f"--photos={photo}", f"--axes={axes}", "--edits=male=3"],
         "--edits=male=3: 'male=3' is not ATTRIBUTE:AMOUNT"),
        ("invert", [f"--photos={photo}", f"--axes={axes}", "--edits=bald:3"],
         "--edits=bald: ['bald'] not among the axes"),
        ("invert", ["--generated=2", f"--axes={axes}"], f"--axes={axes}: edits are shown"),
        ("invert", ["--generated=2", "--edits=male:3"], "--edits=male:3: needs --axes"),
        ("invert", [f"--photos={photo}", f"--axes={text}"], f"--axes={text}: not an axes file"),
        ("invert", ["--photos=/nonexistent.jpg"], "--photos=/nonexistent.jpg: no such photo"),
        ("invert", [], "--photos=: nothing to invert"),
        ("invert", [f"--photos={photo}", "--box=1,2,3"], "--box=1,2,3: give left,top"),
        ("traverse", [], "--axes=: must not be empty"),
        ("traverse", [f"--axes={axes}", "--lock=bald"], "--lock=bald: ['bald'] not among"),
        ("traverse", [f"--axes={axes}", "--layers=0:4"], "--layers=0:4: needs W or W+ axes"),
        ("traverse", [f"--axes={axes}", "--layers=4"], "--layers=4: must be START:STOP"),
        ("traverse", [f"--axes={axes}", "--latents=/nonexistent.npy"],
         "--latents=/nonexistent.npy: no such"),
        ("benchmark_axis_quality", ["--methods=ols,foo"], "--methods=ols,foo: 'foo' is not"),
        ("benchmark_axis_quality", ["--max_n=svm:5"], "--max_n=svm:5: entries look like"),
        ("benchmark_throughput", ["--peer_python=/nonexistent/python"],
         "--peer_python=/nonexistent/python: not an executable"),
        ("benchmark_throughput", ["--dtype=float16"], "--dtype=float16: 'float16' is not one"),
        ("benchmark_throughput", ["--batch=0"], "--batch=0: must be at least 1"),
        ("benchmark_throughput", ["--dtype=bfloat16"], "--dtype=bfloat16: bfloat16 is the"),
        ("benchmark_throughput", [f"--profile_json={tmp}"], f"--profile_json={tmp}: is a dir"),
        ("train_celeba_extractor", [], "--workdir=: must not be empty"),
        ("train_celeba_extractor", ["--workdir=w", "--data_dir=/nonexistent"],
         "--data_dir=/nonexistent: no such directory"),
    ]


def test_bad_flags_are_one_line_exit_2_before_any_model_loads(tmp_path, axes_file, text_file,
                                                              capsys, no_models):
    for script, args, expected in _cases(tmp_path, axes_file, text_file):
        code, _, err, called = run_cli(capsys, script, *args)
        line = err.strip()
        assert (code, called, no_models) == (2, [], []), (script, args, err)
        assert "\n" not in line and "Traceback" not in err, (script, args, err)
        assert line.startswith(f"{script}.py: ") and expected in line, (script, args, line)


def test_a_missing_pggan_pickle_says_where_the_official_one_comes_from(capsys, no_models):
    _, _, err, _ = run_cli(capsys, "discover_axes", "--generator=pggan:gone.pkl")
    for part in ("karras2018iclr-celebahq-1024x1024.pkl", "progressive_growing_of_gans",
                 "--generator=pggan:gone.pkl: cannot read the pg-GAN pickle (No such file"):
        assert part in err


def test_verbosity_1_adds_the_traceback(capsys, no_models):
    code, _, err, _ = run_cli(capsys, "discover_axes", "--verbosity=1", "--eval_step=inf")
    assert code == 2 and "Traceback" in err
    assert err.strip().splitlines()[-1] == "discover_axes.py: --eval_step=inf: must be a " \
                                           "finite number"


def test_a_bug_in_main_is_a_traceback_not_a_usage_error():
    def buggy(cfg):
        raise KeyError("a bug")
    with pytest.raises(KeyError):
        cli.run(buggy, _Tiny, argv=["tiny"])


@dataclasses.dataclass(frozen=True)
class _Tiny:
    n: int = cli.flag(3, "A count.", min=1)
    steps: tuple[float, ...] = cli.flag((-1.0, 1.0), "Steps.", nonempty=True)
    name: str | None = cli.flag(None, "A name.")
    fast: bool = cli.flag(False, "Fast.")


def test_flags_come_from_the_dataclass_and_command_line_wins_over_config(tmp_path, capsys):
    cfg = cli.parse(_Tiny, ["tiny", "--n", "5", "--steps=-2,0.5", "--fast", "--name=x"])
    assert cfg == _Tiny(n=5, steps=(-2.0, 0.5), name="x", fast=True)
    other = tmp_path / "other.py"                # a config file with other defaults
    other.write_text("import dataclasses\n"
                     "from tlgan_jax import cli\n"
                     "@dataclasses.dataclass(frozen=True)\n"
                     "class Tiny:\n"
                     "    n: int = cli.flag(7, 'A count.', min=1)\n"
                     "    steps: tuple[float, ...] = cli.flag((0.0,), 'Steps.')\n"
                     "    name: str | None = cli.flag('y', 'A name.')\n"
                     "    fast: bool = cli.flag(True, 'Fast.')\n"
                     "def get_config():\n"
                     "    return Tiny()\n")
    as_dict = dataclasses.asdict
    assert as_dict(cli.parse(_Tiny, ["tiny", f"--config={other}"])) == \
        as_dict(_Tiny(n=7, steps=(0.0,), name="y", fast=True))
    assert as_dict(cli.parse(_Tiny, ["tiny", f"--config={other}", "--n=2", "--nofast"])) == \
        as_dict(_Tiny(n=2, steps=(0.0,), name="y"))
    wrong = tmp_path / "wrong.py"
    wrong.write_text("import dataclasses\n@dataclasses.dataclass\nclass X:\n    m: int = 1\n"
                     "def get_config():\n    return X()\n")
    with pytest.raises(cli.ConfigError, match="--config=.*other fields"):
        cli.parse(_Tiny, ["tiny", f"--config={wrong}"])
    with pytest.raises(cli.ConfigError, match="--n=0: must be at least 1"):
        cli.parse(_Tiny, ["tiny", "--n=0"])
    with pytest.raises(cli.ConfigError, match="--steps=: must not be empty"):
        cli.parse(_Tiny, ["tiny", "--steps="])


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_exits_0_and_lists_every_field_with_its_default(script, capsys, no_models):
    code, out, _, _ = run_cli(capsys, script, "--help")
    assert code == 0
    module = cli.load_config_module(ROOT / "configs" / f"{script}.py")
    for f in dataclasses.fields(module.get_config()):
        assert f"--{f.name}:" in out or f"--[no]{f.name}:" in out, f.name
    assert "(default: " in out
    if script == "benchmark_throughput":
        assert "celeba40-random" in out.split("--extractors:")[1].split("--")[0]


def test_editor_help_shows_port_and_host_defaults(capsys):
    from tlgan_jax.serve import launch
    with pytest.raises(SystemExit) as e:
        launch.main(["--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0
    assert "--port: Port to listen on.\n    (default: '8000')" in out
    assert "(default: '127.0.0.1')" in out.split("--host:")[1].split("--")[0]
    for name in ("axes", "generator", "extractors", "default_samples", "invert_steps",
                 "invert_restarts", "refine_steps", "feature_weight", "max_upload_mb",
                 "benchmark", "allowed_host", "invert_queue"):
        assert f"--{name}:" in out
    assert "--[no]no_warm_invert:" in out


def test_editor_refuses_a_busy_port_before_loading(capsys, no_models):
    pytest.importorskip("fastapi")
    from tlgan_jax.serve import launch
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(SystemExit) as e:
            launch.main([f"--port={port}"])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and no_models == []
    assert err == (f"python -m tlgan_jax.serve: --port={port}: 127.0.0.1:{port} is in use "
                   f"(another editor?); pass another --port, e.g. --port={port + 1}")


def test_editor_host_guard_and_upload_queue_flags_reach_the_app(monkeypatch, capsys):
    """--allowed_host (plus a named --host) goes to create_app(allowed_hosts=...),
    --invert_queue to the editor's Limits, --identity and --judges to build_editor; a negative
    queue or a bad judge is a one-line error."""
    pytest.importorskip("fastapi")
    import types

    import uvicorn

    from tlgan_jax.serve import app as app_module
    from tlgan_jax.serve import launch
    seen = {}

    def fake_build(axes, generator, extractors, *, invert_config, limits, default_samples,
                   identity, judges):
        seen["limits"], seen["identity"], seen["judges"] = limits, identity, judges
        return types.SimpleNamespace(gen=types.SimpleNamespace(name="g"), attributes=["a"],
                                     warmup=lambda **kw: None)

    monkeypatch.setattr(launch, "build_editor", fake_build)
    monkeypatch.setattr(app_module, "create_app",
                        lambda editor, allowed_hosts=(): seen.setdefault("hosts", allowed_hosts))
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.setdefault("run", kw))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(SystemExit) as e:
        launch.main(["--allowed_host=editor.example.org,10.0.0.7", "--invert_queue=5",
                     "--host=127.0.0.2", f"--port={port}", "--no_warm_invert",
                     "--identity=faceapi", "--judges=fa_age_gender"])
    assert e.value.code == 0, capsys.readouterr().err
    assert seen["hosts"] == ["editor.example.org", "10.0.0.7", "127.0.0.2"]
    assert seen["limits"].invert_queue == 5 and seen["run"]["port"] == port
    assert seen["identity"] == "faceapi" and seen["judges"] == ("fa_age_gender",)
    with pytest.raises(SystemExit) as e:
        launch.main(["--judges=auto,fa_age_gender"])
    assert e.value.code == 2 and "--judges=auto,fa_age_gender: auto and none stand alone" in \
        capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        launch.main(["--identity=arcface"])
    assert e.value.code == 2 and "--identity=arcface" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        launch.main(["--invert_queue=-1"])
    assert e.value.code == 2
    assert capsys.readouterr().err.endswith("--invert_queue=-1: must be at least 0\n")
    with pytest.raises(SystemExit) as e:
        launch.main(["--allowed_host=http://evil.example/"])
    assert e.value.code == 2 and "--allowed_host=http://evil.example/: give host names" in \
        capsys.readouterr().err


def test_as_a_user_runs_it(tmp_path):
    """The real processes: --help exits 0, a bad value exits 2 with one line and no traceback."""
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    script = str(ROOT / "experiments" / "discover_axes.py")
    ok = subprocess.run([sys.executable, script, "--help"], capture_output=True, text=True,
                        env=env, timeout=300)
    assert ok.returncode == 0 and "--num_samples:" in ok.stdout
    bad = subprocess.run([sys.executable, script, "--eval_step=nan", f"--workdir={tmp_path}"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert bad.returncode == 2
    assert bad.stderr == "discover_axes.py: --eval_step=nan: must be a finite number\n"
    assert not list(tmp_path.iterdir())          # nothing was written


def test_every_phase_of_the_main_job_reports_progress_with_a_rate(tmp_path, capsys,
                                                                  caplog):
    """No long silence: labelling, fitting, edit evaluation and traversals each print a line
    (the ones that take a while with their rate; progress bars by tqdm on stderr, the fit's
    start and end as absl INFO log lines)."""
    import logging
    caplog.set_level(logging.INFO, logger="absl")
    sys.path.insert(0, str(ROOT / "tests"))
    from tlgan_jax.discover import DiscoverConfig, discover_axes

    from toy import toy_extractor, toy_generator
    discover_axes(toy_generator(), [toy_extractor()], tmp_path,
                  DiscoverConfig(num_samples=512, shard_size=256, eval_faces=8,
                                 traversal_faces=2))
    err = capsys.readouterr().err
    for phase in ("labelling", "evaluating edits", "rendering traversals"):
        lines = [part for part in err.replace("\r", "\n").splitlines() if phase in part]
        assert lines and "/s" in lines[-1], phase
    assert "fitting 2 axes (ols) on 512 samples" in caplog.text and "fitted in" in caplog.text
    n_faces = 8 * (1 + 4 * 2)                    # y0, then ±λ free and ±λ locked per axis
    last = [p for p in err.replace("\r", "\n").splitlines() if "evaluating edits" in p][-1]
    assert f" {n_faces}/{n_faces} " in last and "faces/s" in last


def _user_errors():
    from tlgan_jax.bench.throughput import PeerError
    from tlgan_jax.invert.photos import PhotoError
    from tlgan_jax.store import ShardStoreError
    return [ShardStoreError("runs/x holds samples of another run (differs in num: 1 there vs 2 "
                            "now); use another directory or delete it. Nothing was overwritten."),
            PhotoError("me.jpg: not an image PIL can read"),
            PeerError("the peer (python peer.py) failed with exit status 1: No module named "
                      "torch"),
            ModuleNotFoundError("reading CelebA needs tensorflow-datasets, the 'celeba' extra")]


@pytest.mark.parametrize("index", range(4))
def test_library_user_errors_during_the_job_are_one_line_exit_2(index, capsys):
    """A mistake found only once the job runs (a workdir of another run, an unreadable photo,
    a failing peer, a missing extra) is reported like a bad flag."""
    exc = _user_errors()[index]

    def job(cfg):
        raise exc
    with pytest.raises(SystemExit) as e:
        cli.run(job, _Tiny, argv=["tiny"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err == f"tiny: {exc}\n"
