"""The editor's JSON API (tlgan_jax.serve): render/edit/score/invert semantics, bad input
(4xx with a message, and the server keeps serving), latency reporting, and fuzzing from its OpenAPI
schema with schemathesis."""
import io
import json
import socket

import jax
import numpy as np
import pytest
from PIL import Image

from helpers import require_module

require_module("fastapi")                           # the `ui` and `test` extras
schemathesis = require_module("schemathesis")
from fastapi.testclient import TestClient  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

from tlgan_jax.axes import Axes  # noqa: E402
from tlgan_jax.editing import edit_latents  # noqa: E402
from tlgan_jax.extractors import load_extractor  # noqa: E402
from tlgan_jax.generators import load_generator  # noqa: E402
from tlgan_jax.invert import InversionConfig  # noqa: E402
from tlgan_jax.serve import Editor, Limits, create_app  # noqa: E402
from tlgan_jax.serve.launch import start_server  # noqa: E402

pytestmark = pytest.mark.slow      # the quick loop: pytest -m "not slow"

TINY_INVERSION = InversionConfig(steps=3, restarts=2, init_pool=4, refine_steps=2)
LIMITS = Limits(max_upload_bytes=2 * 1024 * 1024, max_photo_pixels=4_000_000, stored_photos=2)


@pytest.fixture(scope="module")
def editor():
    gen = load_generator("digiface64")
    exts = [load_extractor("gender"), load_extractor("age")]
    names = ["male", "age", "smile"]            # 'smile' has an axis but no extractor score
    rng = np.random.default_rng(0)
    axes = Axes.from_vectors(rng.normal(size=(gen.latent_dim, 3)), names, method="random",
                             metadata={"generator": gen.name})
    ed = Editor(gen, exts, axes, invert_config=TINY_INVERSION, limits=LIMITS)
    ed.warmup(invert=True)
    return ed


LOCAL = "http://127.0.0.1"          # the editor answers only to loopback Host names


@pytest.fixture(scope="module")
def client(editor):
    return TestClient(create_app(editor), base_url=LOCAL)


def _z(editor, seed=0):
    return editor.random_latent(seed)[0]


def _png_bytes(w=96, h=96, color=(200, 150, 120)):
    buf = io.BytesIO()
    Image.new("RGB", (w, h), color).save(buf, "PNG")
    return buf.getvalue()


def _decode(data_url):
    head, b64 = data_url.split(",", 1)
    assert head == "data:image/png;base64"
    import base64
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))))


def _alive(client, editor):
    r = client.post("/api/render", json={"z": _z(editor)})
    assert r.status_code == 200, r.text


def test_layers_need_w_axes(client, editor):
    """Layer-wise edits belong to W / W+ axes: a z editor lists none, its schema has no
    `layers` field, and a request naming layers is refused (422, the field named)."""
    assert client.get("/api/info").json()["layers"] is None
    schema = client.get("/openapi.json").json()["components"]["schemas"]
    assert "layers" not in schema["EditState"]["properties"]
    r = client.post("/api/render", json={"z": _z(editor), "amounts": {"male": 1.0},
                                         "layers": {"male": "coarse"}})
    assert r.status_code == 422
    assert [e["loc"][-1] for e in r.json()["detail"]] == ["layers"]
    _alive(client, editor)


def test_render_is_the_locked_edit_of_the_state(client, editor):
    z = _z(editor, 1)
    r = client.post("/api/render", json={"z": z, "amounts": {"male": 1.5, "age": -1.0},
                                         "lock": ["smile"]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert _decode(body["image"]).shape == (64, 64, 3)
    assert set(body["scores"]) == {"male", "age"} and 0 < body["ms"] < 5000
    assert r.headers["server-timing"].startswith("render;dur=")
    # z' equals the library's edit_latents with the same lock
    want = edit_latents(editor.gen, np.asarray([z], np.float32), editor.axes,
                        {"male": 1.5, "age": -1.0}, lock=["smile"])
    np.testing.assert_allclose(body["z_edited"], np.asarray(want)[0], atol=1e-5)
    # the image and scores are those of G(z')
    img = np.asarray(editor.gen(np.asarray(want)))
    from tlgan_jax.generators import to_uint8
    assert np.abs(_decode(body["image"]).astype(int) - to_uint8(img)[0]).max() <= 1
    male = float(editor.extractors[0](img)["male"][0])
    assert abs(body["scores"]["male"] - male) < 1e-3
    # a locked attribute with an amount moves along its Gram-Schmidt'd axis (TL-GAN order)
    state = {"z": z, "amounts": {"male": 1.0, "age": 2.0}, "lock": ["age", "male"]}
    got = client.post("/api/edit", json=state).json()["z_edited"]
    d = editor.axes.disentangle(lock=["male", "age"])         # index order, not request order
    np.testing.assert_allclose(got, np.asarray(z) + np.asarray(d["male"]) +
                               2 * np.asarray(d["age"]), atol=1e-5)


def test_jitted_lock_equals_axes_disentangle_for_every_lock_set():
    import itertools

    from tlgan_jax.axes import locked_directions
    rng = np.random.default_rng(1)
    k, d = 5, 10
    names = [f"a{i}" for i in range(k)]
    axes = Axes.from_vectors(rng.normal(size=(d, k)) + 0.5, names)   # far from orthogonal
    fn = jax.jit(locked_directions)
    for m in range(k + 1):
        for lock in itertools.combinations(range(k), m):
            mask = np.isin(np.arange(k), lock)
            got, ok = fn(axes.directions, mask)
            want = axes.disentangle(lock=[names[i] for i in lock]).directions
            assert bool(np.all(ok))
            np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=2e-5)
    # an axis in the span of the locked ones: not ok (Axes.disentangle raises)
    v = np.asarray(axes.directions)
    bad = Axes.from_vectors(np.stack([v[:, 0], v[:, 1], v[:, 0] + v[:, 1]], 1), ["a", "b", "c"])
    _, ok = fn(bad.directions, np.array([True, True, False]))
    assert list(np.asarray(ok)) == [True, True, False]
    with pytest.raises(ValueError, match="span"):
        bad.disentangle(lock=["a", "b"])
    _, ok = fn(bad.directions, np.array([True, True, True]))
    assert list(np.asarray(ok)) == [True, True, False]


def test_png_score_random_info_and_stats(client, editor):
    z = _z(editor, 2)
    r = client.post("/api/render.png", json={"z": z, "amounts": {"male": 2}})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(r.content)).size == (64, 64)
    s = client.post("/api/score", json={"z": z}).json()["scores"]
    r0 = client.post("/api/render", json={"z": z}).json()
    assert s == r0["scores"]
    a = client.post("/api/random", json={"seed": 7}).json()
    assert a["seed"] == 7 and a == client.post("/api/random", json={"seed": 7}).json()
    np.testing.assert_array_equal(a["z"], np.asarray(
        editor.gen.sample_latents(jax.random.key(7), 1))[0])   # the library's draw for seed 7
    assert len(client.post("/api/random", json={}).json()["z"]) == 100
    info = client.get("/api/info").json()
    assert [a["name"] for a in info["attributes"]] == ["male", "age", "smile"]
    assert [a["has_score"] for a in info["attributes"]] == [True, True, False]
    assert info["generator"]["resolution"] == 64
    assert client.get("/api/progress").json() == {"busy": False, "stage": "", "done": 0,
                                                  "total": 0}
    stats = client.get("/api/stats").json()
    assert stats["renders"] >= 2 and stats["p50_ms"] > 0
    page = client.get("/")
    assert page.status_code == 200 and 'id="face"' in page.text
    assert client.get("/static/app.js").status_code == 200


def test_slider_moves_report_their_server_time_and_stats_summarise_it(client, editor):
    """Each render returns its server-side milliseconds and /api/stats summarises exactly those
    (the latency itself is measured by `python -m tlgan_jax.serve --benchmark N`, not here)."""
    z = _z(editor, 3)
    rng = np.random.default_rng(0)
    editor.render_ms.clear()
    ms = []
    for i in range(60):
        amounts = {"male": float(rng.uniform(-3, 3)), "age": float(rng.uniform(-3, 3))}
        r = client.post("/api/render", json={"z": z, "amounts": amounts,
                                             "lock": ["smile"] if i % 2 else []})
        ms.append(r.json()["ms"])
    assert min(ms) > 0
    stats = client.get("/api/stats").json()
    assert stats["renders"] == 60
    assert stats["p50_ms"] == pytest.approx(np.percentile(ms, 50))
    assert stats["p95_ms"] == pytest.approx(np.percentile(ms, 95))
    assert stats["max_ms"] == pytest.approx(max(ms))
    print(f"server-side render: p50 {stats['p50_ms']:.1f} ms, p95 {stats['p95_ms']:.1f} ms")


@pytest.mark.parametrize("body, status, message", [
    ('{"z": Z, "amounts": {"male": NaN}}', 422, "finite number"),
    ('{"z": Z, "amounts": {"male": Infinity}}', 422, "finite number"),
    ('{"z": Z, "amounts": {"male": 1e9}}', 422, "less than or equal to 10"),
    ('{"z": Z, "amounts": {"beard": 1}}', 422, "Input should be 'male', 'age' or 'smile'"),
    ('{"z": Z, "lock": ["beard"]}', 422, "Input should be 'male', 'age' or 'smile'"),
    ('{"z": Z, "lock": ["male", "male"]}', 422, "more than once"),
    ('{"z": [1, 2, 3]}', 422, "at least 100 items"),
    ('{"z": ZNAN}', 422, "finite number"),
    ('{"z": Z, "photo": "0123456789abcdef0123456789abcdef"}', 404, "upload the photo again"),
    ('{"z": Z, "colour": 1}', 422, "Extra inputs are not permitted"),
    ('{"z": Z', 422, "JSON decode error"),
    ('[]', 422, "valid dictionary"),
])
def test_bad_state_gets_a_4xx_with_a_message_and_the_server_keeps_serving(
        client, editor, body, status, message):
    z = json.dumps(_z(editor))
    znan = json.dumps([float("nan")] + _z(editor)[1:], allow_nan=True)
    raw = body.replace("ZNAN", znan).replace("Z", z)
    for path in ("/api/render", "/api/edit", "/api/render.png"):
        r = client.post(path, content=raw, headers={"content-type": "application/json"})
        want = 200 if path == "/api/edit" and status == 404 else status   # edit renders nothing
        assert r.status_code == want, (path, r.text)
        if want != 200:
            assert message in r.text, r.text
    _alive(client, editor)


def test_oversized_and_non_image_uploads_are_refused(client, editor):
    r = client.post("/api/invert", files={"file": ("notes.txt", b"hello, not a photo")})
    assert r.status_code == 415 and "not an image" in r.json()["detail"]
    big = b"\0" * (LIMITS.max_upload_bytes + 100_000)
    r = client.post("/api/invert", files={"file": ("big.png", big, "image/png")})
    assert r.status_code == 413 and "too large" in r.json()["detail"]
    # a small file that decodes to too many pixels (decompression bomb) is refused unread
    r = client.post("/api/invert", files={"file": ("bomb.png", _png_bytes(2500, 2000))})
    assert r.status_code == 413 and "megapixels" in r.json()["detail"], r.text
    r = client.post("/api/invert", files={"file": ("a.png", _png_bytes())},
                    data={"framing": "face"})
    assert r.status_code == 422 and "'auto', 'center' or 'full'" in r.text
    r = client.post("/api/invert", files={"file": ("a.png", _png_bytes())},
                    data={"box": "1,2,3"})
    assert r.status_code == 422
    r = client.post("/api/invert", files={"file": ("a.png", _png_bytes())},
                    data={"box": "50,50,10,10"})
    assert r.status_code == 400 and "right > left" in r.json()["detail"]
    r = client.post("/api/invert", data={"framing": "auto"})
    assert r.status_code == 422 and "file" in r.text
    big_json = json.dumps({"z": _z(editor), "pad": "x" * (LIMITS.max_json_bytes + 1)})
    r = client.post("/api/render", content=big_json, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "too large" in r.json()["detail"]
    _alive(client, editor)


def test_invert_upload_then_edit_the_photo(client, editor):
    rng = np.random.default_rng(0)
    photo = (rng.uniform(0, 255, (80, 100, 3))).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(photo).save(buf, "JPEG")
    r = client.post("/api/invert", files={"file": ("me.jpg", buf.getvalue(), "image/jpeg")},
                    data={"framing": "center"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["z"]) == 100 and body["framing"] == "center" and body["box"] == [10, 0, 90, 80]
    assert _decode(body["target"]).shape == (64, 64, 3) and np.isfinite(body["psnr"])
    photo_id = body["photo"]
    assert isinstance(photo_id, str) and len(photo_id) == 32
    # rendering the inverted z with the photo's refined generator gives the reconstruction
    r = client.post("/api/render", json={"z": body["z"], "photo": photo_id})
    assert r.status_code == 200 and r.json()["image"] == body["image"]
    plain = client.post("/api/render", json={"z": body["z"]}).json()["image"]
    assert plain != body["image"]                      # the refinement changed the generator
    edited = client.post("/api/render", json={"z": body["z"], "photo": photo_id,
                                              "amounts": {"male": 3}}).json()["image"]
    assert edited != body["image"]
    r = client.post("/api/invert", files={"file": ("me.jpg", buf.getvalue())},
                    data={"framing": "center", "refine": "false"})
    assert r.status_code == 200 and r.json()["photo"] is None
    # stored refinements are bounded (LRU): the oldest id expires with a clear 404
    for _ in range(LIMITS.stored_photos):
        client.post("/api/invert", files={"file": ("me.jpg", buf.getvalue())},
                    data={"framing": "center"})
    r = client.post("/api/render", json={"z": body["z"], "photo": photo_id})
    assert r.status_code == 404 and "expired" in r.json()["detail"]


def test_real_server_survives_bad_requests(editor):
    """Over real HTTP: malformed requests, a truncated body and a chunked oversized upload,
    then a normal render still works."""
    import httpx
    server, url = start_server(create_app(editor))
    try:
        host, port = url.rsplit("/", 1)[1].split(":")
        with socket.create_connection((host, int(port))) as s:       # not HTTP at all
            s.sendall(b"\x16\x03\x01 garbage\r\n\r\n")
            s.recv(1024)
        with socket.create_connection((host, int(port))) as s:       # body shorter than declared
            s.sendall(b"POST /api/render HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                      b"\r\nContent-Length: 5000\r\n\r\n{\"z\": [1")
            s.shutdown(socket.SHUT_WR)
            s.recv(1024)

        def chunks():
            for _ in range(40):
                yield b"\0" * 100_000                                 # 4 MB, no Content-Length
        r = httpx.post(url + "/api/invert", content=chunks(),
                       headers={"content-type": "multipart/form-data; boundary=x"})
        assert r.status_code == 413
        r = httpx.post(url + "/api/render", json={"z": _z(editor)}, timeout=30)
        assert r.status_code == 200 and r.json()["image"].startswith("data:image/png")
    finally:
        server.should_exit = True


FUZZ_EXAMPLES = 30          # per operation


def fuzz_api(editor, refused_when_valid=("/api/invert",)) -> int:
    """schemathesis generates requests (valid and invalid) for every operation from the
    editor's OpenAPI schema: no 5xx, every response matches its documented status and schema,
    and schema-valid requests are accepted except on the paths `refused_when_valid` (where
    the schema cannot say everything). Returns the number of requests made. (Driven by hand,
    since schemathesis' lazy pytest schemas do not support pytest 9 yet.)"""
    from hypothesis import given
    from hypothesis.errors import Unsatisfiable
    from schemathesis.python import asgi
    app = create_app(editor, allowed_hosts=[asgi.HOST])   # schemathesis' client's Host name
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {f"{op.method.upper()} {op.path}" for op in operations} >= {
        "POST /api/render", "POST /api/render.png", "POST /api/edit", "POST /api/score",
        "POST /api/invert", "POST /api/random", "GET /api/info", "GET /api/stats"}
    from schemathesis.specs.openapi.checks import positive_data_acceptance
    calls = 0
    for op in operations:
        excluded = [positive_data_acceptance] if op.path in refused_when_valid else []
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            @given(case=op.as_strategy(generation_mode=mode))
            @settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=True, database=None,
                      suppress_health_check=list(HealthCheck))
            def check(case):
                nonlocal calls
                calls += 1
                case.call_and_validate(excluded_checks=excluded)   # noqa: B023 (run below)
            try:
                check()
            except Unsatisfiable:
                # no invalid request exists for an operation without inputs (GET /api/info)
                assert mode == schemathesis.GenerationMode.NEGATIVE and op.method == "get"
    _alive(TestClient(app, base_url=LOCAL), editor)
    return calls


def test_api_fuzzed_from_its_openapi_schema(editor):
    """The z editor under schemathesis (`fuzz_api`). A schema cannot say "the file must be a
    photo": schema-valid uploads of random bytes are rightly refused (415/400), so only there
    "valid data is accepted" is not checked."""
    assert fuzz_api(editor) > 100


def test_api_of_a_w_editor_fuzzed_from_its_openapi_schema():
    """The same for an editor on W axes (tiny32 StyleGAN2), whose states carry `layers`: a
    range of the right form may still select no style input (e.g. 5:2), which is refused
    with 400 by design, so there "valid data is accepted" is not checked either."""
    from helpers import stylegan2_fixtures_dir
    gen = load_generator(f"stylegan2:{stylegan2_fixtures_dir() / 'tiny32.pkl'}")
    axes = Axes.from_vectors(np.random.default_rng(0).normal(size=(32, 2)), ["a", "b"],
                             metadata={"latent_space": "w", "generator": gen.name})
    w_editor = Editor(gen.in_space("w"), [load_extractor("gender")], axes,
                      invert_config=TINY_INVERSION, limits=LIMITS)
    assert fuzz_api(w_editor, ("/api/invert", "/api/render", "/api/render.png",
                               "/api/edit")) > 100


# ----------------------------------------------------------------------------- hostile requests

@pytest.mark.parametrize("base, allowed, status", [
    ("http://127.0.0.1:8000", (), 200), ("http://localhost", (), 200),
    ("http://127.3.4.5", (), 200), ("http://[::1]:8000", (), 200),
    ("http://evil.example", (), 421), ("http://evil.example:8000", (), 421),
    ("http://192.168.1.5:8000", (), 421), ("http://127.0.0.1.evil.example", (), 421),
    ("http://localhost.evil.example", (), 421), ("http://[::2]:8000", (), 421),
    ("http://editor.lan:8000", ("editor.lan",), 200), ("http://other.lan", ("editor.lan",), 421),
])
def test_only_loopback_and_configured_hosts_are_served(editor, base, allowed, status):
    """A foreign Host (DNS rebinding: evil.example resolving to 127.0.0.1) gets 421 on every
    route; loopback and --allowed_host names are served."""
    c = TestClient(create_app(editor, allowed_hosts=allowed), base_url=base)
    for r in (c.get("/api/info"), c.post("/api/render", json={"z": _z(editor)}), c.get("/")):
        assert r.status_code == status, (base, r.text)
        if status == 421:
            assert "--allowed_host" in r.json()["detail"]


@pytest.mark.parametrize("headers, status", [
    ({}, 200),                                                   # curl, httpx, scripts
    ({"Origin": "http://127.0.0.1"}, 200),                       # the editor's own page
    ({"Origin": "http://127.0.0.1", "Sec-Fetch-Site": "same-origin"}, 200),
    ({"Sec-Fetch-Site": "none"}, 200),
    ({"Origin": "http://evil.example"}, 403),
    ({"Origin": "null"}, 403),
    ({"Origin": "http://127.0.0.1:9999"}, 403),                  # another port: another origin
    ({"Sec-Fetch-Site": "cross-site"}, 403),
    ({"Sec-Fetch-Site": "same-site"}, 403),
    ({"Origin": "http://127.0.0.1", "Sec-Fetch-Site": "cross-site"}, 403),
])
def test_cross_origin_writes_are_refused(client, editor, headers, status):
    r = client.post("/api/render", json={"z": _z(editor)}, headers=headers)
    assert r.status_code == status, r.text
    if status == 403:
        assert "cross-origin request refused" in r.json()["detail"]
        r = client.post("/api/invert", files={"file": ("a.png", _png_bytes())}, headers=headers)
        assert r.status_code == 403
    assert client.get("/api/info", headers=headers).status_code == 200   # reads stay open


def test_dns_rebinding_over_real_http(editor):
    import httpx
    server, url = start_server(create_app(editor))
    try:
        port = url.rsplit(":", 1)[1]
        r = httpx.get(url + "/api/info", headers={"Host": f"attacker.example:{port}"})
        assert r.status_code == 421 and "attacker.example" in r.json()["detail"]
        r = httpx.post(url + "/api/render", json={"z": _z(editor)}, timeout=30,
                       headers={"Origin": url, "Sec-Fetch-Site": "same-origin"})
        assert r.status_code == 200
    finally:
        server.should_exit = True


class _GatedInverter:
    """Wraps the editor's inverter: each inversion waits for `release` (set by the test), so
    the inversion worker is provably busy until then."""

    def __init__(self, inner):
        import threading
        self.inner, self.config = inner, inner.config
        self.started, self.release = threading.Event(), threading.Event()
        self.calls = 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        self.started.set()
        assert self.release.wait(300)
        return self.inner(*args, **kwargs)


def test_queued_uploads_never_delay_renders_and_extra_uploads_get_503(editor, monkeypatch):
    """One upload inverting (held), 44 more at once: LIMITS.invert_queue of them wait as bytes
    (not decoded), the rest get 503 + Retry-After at once; meanwhile renders are answered,
    and after the release exactly the running and the queued uploads are inverted."""
    import concurrent.futures
    import threading

    import httpx

    from tlgan_jax.serve import editor as editor_module
    gate = _GatedInverter(editor.inverter)
    monkeypatch.setattr(editor, "inverter", gate)
    decoded = []
    real_load = editor_module.load_photo

    def counting_load(*a, **k):
        decoded.append(threading.get_ident())
        return real_load(*a, **k)
    monkeypatch.setattr(editor_module, "load_photo", counting_load)
    photo = _png_bytes(80, 80)
    server, url = start_server(create_app(editor))

    def upload(_=None):
        return httpx.post(url + "/api/invert", files={"file": ("a.png", photo)},
                          data={"framing": "center", "refine": "false"}, timeout=600)
    pool = concurrent.futures.ThreadPoolExecutor(64)
    try:
        first = pool.submit(upload)
        assert gate.started.wait(120), first.result() if first.done() else "no inversion"
        extra = [pool.submit(upload) for _ in range(44)]
        refused = []
        for f in concurrent.futures.as_completed(extra, timeout=120):
            refused.append(f.result())
            if len(refused) == 44 - LIMITS.invert_queue:
                break
        assert not gate.release.is_set()
        assert all(r.status_code == 503 for r in refused), [r.text for r in refused[:3]]
        assert "busy" in refused[0].json()["detail"] and int(refused[0].headers["retry-after"]) >= 1
        assert sum(not f.done() for f in extra) == LIMITS.invert_queue   # waiting in the queue
        assert len(decoded) == 1                       # only the running upload was decoded
        # renders are served while the inversion worker is busy and the queue is full
        renders = [pool.submit(httpx.post, url + "/api/render", json={"z": _z(editor, i)},
                               timeout=60) for i in range(20)]
        assert all(r.result().status_code == 200 for r in renders)
        assert editor.progress()["busy"] and not gate.release.is_set() and gate.calls == 1
        gate.release.set()
        codes = sorted(r.status_code for r in [first.result()] + [f.result() for f in extra])
        assert codes == [200] * (1 + LIMITS.invert_queue) + [503] * (44 - LIMITS.invert_queue)
        assert gate.calls == 1 + LIMITS.invert_queue
        assert upload().status_code == 200                # the queue is free again
    finally:
        gate.release.set()
        pool.shutdown(wait=True)
        server.should_exit = True


def test_render_reports_the_edits_identity_distance_from_one_compiled_function():
    import jax.numpy as jnp

    from tlgan_jax.extractors import FaceDescriptor

    from toy import toy_extractor, toy_generator
    gen = toy_generator(latent_dim=8, resolution=16, linear=True)   # D(G(z)) linear in z
    traces = []

    def raw(p, x):                                           # mean colour: a 3-d "descriptor"
        traces.append(1)                                     # runs once per trace
        return x.mean(axis=(2, 3)) * p["s"]

    n = np.linalg.qr(np.random.default_rng(0).normal(size=(8, 2)))[0].astype(np.float32)
    axes = Axes.from_vectors(n, ["u", "v"], method="random", metadata={"generator": "toy"})
    desc = FaceDescriptor(name="toydesc", dim=3, threshold=0.05, input_shape=(3, 16, 16),
                          params={"s": jnp.float32(2.0)}, raw_apply=raw,
                          preprocess=lambda im: jnp.transpose(im, (0, 3, 1, 2)))
    ed = Editor(gen, [toy_extractor()], axes, descriptor=desc, invert_config=TINY_INVERSION)
    client = TestClient(create_app(ed), base_url=LOCAL)
    assert client.get("/api/info").json()["identity"] == {"descriptor": "toydesc",
                                                          "threshold": 0.05}
    z = np.asarray(gen.sample_latents(jax.random.key(0), 1))[0]
    colour = lambda zz: 2.0 * np.asarray(gen(zz[None]))[0].mean(axis=(0, 1))   # direct D
    seen = set()
    for amounts, lock in (({"u": 0.5}, []), ({"u": 3.0}, []), ({"u": 1.0, "v": -2.0}, ["v"]),
                          ({}, [])):
        r = client.post("/api/render", json={"z": z.tolist(), "amounts": amounts, "lock": lock})
        assert r.status_code == 200, r.text
        ident = r.json()["identity"]
        z2 = np.asarray(r.json()["z_edited"], np.float32)
        want = float(np.linalg.norm(colour(z2) - colour(z)))
        assert ident["descriptor"] == "toydesc" and ident["threshold"] == 0.05
        np.testing.assert_allclose(ident["distance"], want, rtol=1e-4, atol=1e-6)
        assert ident["kept"] == (want < 0.05)
        seen.add(ident["kept"])
    assert seen == {True, False}                  # both sides of the threshold were tested
    assert len(traces) == 1                       # descriptor inside the one jitted render
    # without a descriptor: identity is null
    plain = TestClient(create_app(Editor(gen, [toy_extractor()], axes,
                                         invert_config=TINY_INVERSION)), base_url=LOCAL)
    r = plain.post("/api/render", json={"z": z.tolist(), "amounts": {"u": 1.0}})
    assert r.status_code == 200 and r.json()["identity"] is None
    assert plain.get("/api/info").json()["identity"] is None


def test_combined_axes_are_scored_and_judged_by_their_sources():
    """An axes file from `discover_axes --combine` (mix = mean of standardised bright and
    redder): the editor scores the combined attribute from its sources' scores, exactly as
    `Combination.score`, and lists the sources as its judges."""
    from tlgan_jax.combine import Combination

    from toy import toy_extractor, toy_generator
    gen = toy_generator(latent_dim=8, resolution=16)
    combo = Combination("mix", ("bright", "redder"), (0.1, -0.2), (0.5, 2.0), (None, 3.0))
    axes = Axes.from_vectors(np.random.default_rng(1).normal(size=(8, 2)), ["bright", "mix"],
                             metadata={"generator": gen.name, "combine": [combo.as_dict()]})
    ed = Editor(gen, [toy_extractor()], axes, invert_config=TINY_INVERSION)
    client = TestClient(create_app(ed), base_url=LOCAL)
    info = {a["name"]: a for a in client.get("/api/info").json()["attributes"]}
    assert info["mix"]["has_score"] and not info["mix"]["binary"]
    assert [j["name"] for j in info["mix"]["judges"]] == ["bright", "redder"]
    z = np.asarray(gen.sample_latents(jax.random.key(2), 1))[0]
    r = client.post("/api/render", json={"z": z.tolist(), "amounts": {"mix": 2.0}})
    assert r.status_code == 200, r.text
    scores = r.json()["scores"]
    want = combo.score(np.array([[scores["bright"], scores["redder"]]]), ["bright", "redder"])
    np.testing.assert_allclose(scores["mix"], want[0], rtol=1e-5, atol=1e-6)


def test_identity_of_the_unedited_face_is_drawn_once_per_face():
    """With a descriptor, the unedited face's descriptor is computed once per (z, photo) and
    reused: a drag of n slider moves draws n + 1 faces, not 2n (and a move back to 0 reports
    distance 0)."""
    import jax.numpy as jnp

    from tlgan_jax.extractors import FaceDescriptor

    from toy import toy_extractor, toy_generator
    gen = toy_generator(latent_dim=8, resolution=16, linear=True)
    desc = FaceDescriptor(name="toydesc", dim=3, threshold=0.05, input_shape=(3, 16, 16),
                          params={"s": jnp.float32(2.0)},
                          raw_apply=lambda p, x: x.mean(axis=(2, 3)) * p["s"],
                          preprocess=lambda im: jnp.transpose(im, (0, 3, 1, 2)))
    axes = Axes.from_vectors(np.eye(8)[:, :1], ["u"], metadata={"generator": "toy"})
    ed = Editor(gen, [toy_extractor()], axes, descriptor=desc, invert_config=TINY_INVERSION)
    calls = []
    render = ed._render
    ed.__dict__["_render"] = lambda *a: calls.append(1) or render(*a)
    z = np.asarray(gen.sample_latents(jax.random.key(0), 1))[0]
    for t in (0.5, 1.0, 1.5, 2.0):
        assert ed.render(z, {"u": t}, [])["identity"]["distance"] > 0
    assert len(calls) == 5                          # the unedited face once, then one per move
    assert ed.render(z, {"u": 0.0}, [])["identity"]["distance"] == 0.0
    assert len(calls) == 6


def test_editor_latency_script_on_stylegan2_w_axes(tmp_path):
    """scripts/editor_latency.py: random W axes for a StyleGAN2 (the tiny32 fixture), the
    editor's HTTP benchmark with layer-wise moves, one JSON with the machine."""
    import subprocess
    import sys
    from pathlib import Path

    from helpers import stylegan2_fixtures_dir
    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "latency.json"
    pkl = stylegan2_fixtures_dir() / "tiny32.pkl"
    run = subprocess.run([sys.executable, str(root / "scripts" / "editor_latency.py"),
                          f"--generator=stylegan2:{pkl}", "--latent_space=w", "--renders=6",
                          "--identity=none", f"--json={out}"],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["machine"]["cpu_count"] >= 1 and len(report["runs"]) == 1
    r = report["runs"][0]
    assert r["generator"].endswith("@w") and r["resolution"] == 32 and r["renders"] == 6
    assert 0 < r["layer_wise_renders"] <= 6 and r["identity"] is None
    assert 0 < r["server"]["p50_ms"] <= r["server"]["p95_ms"]
