"""`xdner serve` (runtime/xdner_runtime/serve.py) against a live uvicorn server on a free port,
with a fake tagger: request and response shapes, micro-batching, every refused request class
(the server answering afterwards), a failing tagger, /metrics, and the page in headless Chromium."""

from __future__ import annotations

import http.client
import json
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

import uvicorn
from xdner_runtime.serve import Limits, create_app

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import _browser  # noqa: E402

INFO = {"name": "fake-ner-en-de", "languages": ["en", "de"], "labels": ["PER", "LOC"], "parameters": 1_234_567,
        "card": {"en": 81.5, "de": 77.25}}
LIMITS = Limits(max_batch=8, max_wait_ms=20)
PLACES = {"Berlin", "Paris"}


class FakeTagger:
    """Capitalised words are PER (LOC for PLACES); records each call's batch size; a text with
    FAIL makes the whole call raise; `delay` seconds per call make batches form."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.calls: list[int] = []

    def __call__(self, texts: list[str]) -> list[list[dict[str, Any]]]:
        self.calls.append(len(texts))
        time.sleep(self.delay)
        if any("FAIL" in t for t in texts):
            raise RuntimeError("boom\nwith a second line")
        return [[{"label": "LOC" if m.group() in PLACES else "PER", "start": m.start(), "end": m.end(),
                  "text": m.group(), "score": 0.9} for m in re.finditer(r"\b[A-Z]\w*", t)] for t in texts]


@contextmanager
def live_server(tagger: FakeTagger, limits: Limits = LIMITS) -> Iterator[tuple[str, int]]:
    """uvicorn in a thread on a free port; yields (host, port)."""
    server = uvicorn.Server(uvicorn.Config(create_app(tagger, INFO, limits), host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    try:
        yield "127.0.0.1", server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def tagger() -> FakeTagger:
    return FakeTagger(delay=0.02)


@pytest.fixture(scope="module")
def addr(tagger: FakeTagger) -> Iterator[tuple[str, int]]:
    with live_server(tagger) as address:
        yield address


def request(addr: tuple[str, int], method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(*addr, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def post(addr: tuple[str, int], payload: Any) -> tuple[int, Any]:
    status, body = request(addr, "POST", "/tag", json.dumps(payload).encode(), {"Content-Type": "application/json"})
    return status, json.loads(body)


def assert_healthy(addr: tuple[str, int]) -> None:
    status, body = request(addr, "GET", "/health")
    assert status == 200 and json.loads(body) == {"status": "ok", "model": INFO["name"]}


def test_single_text(addr):
    status, body = post(addr, {"text": "Anna flew to Berlin."})
    assert status == 200
    assert body == {"text": "Anna flew to Berlin.", "entities": [
        {"label": "PER", "start": 0, "end": 4, "text": "Anna", "score": 0.9},
        {"label": "LOC", "start": 13, "end": 19, "text": "Berlin", "score": 0.9}]}


def test_list_of_texts_keeps_order_and_shape(addr):
    texts = ["Anna met Bob.", "nothing here", "Paris é Zoë"]
    status, body = post(addr, {"texts": texts})
    assert status == 200 and [r["text"] for r in body] == texts
    assert all(set(r) == {"text", "entities"} for r in body)
    assert [[e["text"] for e in r["entities"]] for r in body] == [["Anna", "Bob"], [], ["Paris", "Zoë"]]


def test_concurrent_requests_are_batched(addr, tagger):
    tagger.calls.clear()
    barrier = threading.Barrier(16)
    results: list[tuple[int, Any]] = [None] * 16  # type: ignore[list-item]

    def client(i: int) -> None:
        barrier.wait()
        results[i] = post(addr, {"text": f"Client Number{i}"})

    threads = [threading.Thread(target=client, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [s for s, _ in results] == [200] * 16
    assert [r["text"] for _, r in results] == [f"Client Number{i}" for i in range(16)]
    assert sum(tagger.calls) == 16 and max(tagger.calls) > 1 and len(tagger.calls) < 16
    assert max(tagger.calls) <= LIMITS.max_batch


def test_request_over_max_batch_is_split_and_answered_in_order(addr, tagger):
    tagger.calls.clear()
    texts = [f"Text Number{i} here" for i in range(3 * LIMITS.max_batch + 3)]
    status, body = post(addr, {"texts": texts})
    assert status == 200 and [r["text"] for r in body] == texts
    assert [r["entities"][1]["text"] for r in body] == [f"Number{i}" for i in range(len(texts))]
    assert len(tagger.calls) >= 4 and max(tagger.calls) == LIMITS.max_batch


def send_raw(addr: tuple[str, int], body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    """POST /tag sending `body` in pieces; a server that refuses early may stop reading, so a
    failed send still reads the answer."""
    conn = http.client.HTTPConnection(*addr, timeout=30)
    try:
        conn.putrequest("POST", "/tag")
        for k, v in headers.items():
            conn.putheader(k, v)
        conn.endheaders()
        try:
            for i in range(0, len(body), 1 << 16):
                conn.send(body[i:i + (1 << 16)])
        except (BrokenPipeError, ConnectionResetError):
            pass
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


BIG = b'{"text": "' + b"a " * 5_000_000 + b'"}'  # 10 MB


@pytest.mark.parametrize("case, status, reason", [
    ("body-10MB", 413, "over the limit of 1048576 bytes"),
    ("body-10MB-chunked", 413, "over the limit of 1048576 bytes"),
    ("words-100k", 413, "100000 words, over the limit of 10000"),
    ("not-json", 400, "not JSON"),
    ("bad-utf8", 400, "not JSON"),
    ("bare-string", 422, "body must be"),
    ("extra-key", 422, "body must be"),
    ("text-not-string", 422, '"text" must be a string'),
    ("texts-not-list", 422, '"texts" must be a list of strings'),
    ("texts-item-not-string", 422, '"texts" must be a list of strings'),
    ("texts-empty-list", 422, '"texts" is empty'),
    ("empty-text", 422, "text is empty"),
    ("blank-item", 422, "texts[1] is empty"),
    ("too-many-texts", 413, "257 texts, over the limit of 256"),
])
def test_bad_requests_are_refused_and_server_stays_up(addr, case, status, reason):
    bodies: dict[str, Any] = {
        "words-100k": {"text": "w " * 100_000}, "bare-string": "Anna", "extra-key": {"text": "Anna", "lang": "en"},
        "text-not-string": {"text": 3}, "texts-not-list": {"texts": "Anna"}, "texts-item-not-string": {"texts": ["Anna", None]},
        "texts-empty-list": {"texts": []}, "empty-text": {"text": ""}, "blank-item": {"texts": ["Anna", " \n"]},
        "too-many-texts": {"texts": ["Anna"] * 257},
    }
    if case == "body-10MB":
        got, raw = send_raw(addr, BIG, {"Content-Length": str(len(BIG))})
    elif case == "body-10MB-chunked":  # no Content-Length: the streamed bytes are counted
        conn = http.client.HTTPConnection(*addr, timeout=30)
        conn.request("POST", "/tag", body=(BIG[i:i + (1 << 16)] for i in range(0, len(BIG), 1 << 16)), encode_chunked=True)
        response = conn.getresponse()
        got, raw = response.status, response.read()
        conn.close()
    elif case in ("not-json", "bad-utf8"):
        got, raw = request(addr, "POST", "/tag", b"{text: Anna" if case == "not-json" else b'"\xff\xfe\xfa"')
    else:
        got, raw = request(addr, "POST", "/tag", json.dumps(bodies[case]).encode())
    assert got == status, raw
    assert b"\n" not in raw and reason in json.loads(raw)["error"]
    assert_healthy(addr)


@pytest.mark.parametrize("method, path, status", [("GET", "/nope", 404), ("GET", "/tag", 405), ("POST", "/health", 405)])
def test_unknown_route_and_wrong_method(addr, method, path, status):
    got, raw = request(addr, method, path, b"{}" if method == "POST" else None)
    assert got == status and set(json.loads(raw)) == {"error"} and b"\n" not in raw
    assert_healthy(addr)


def test_tagger_exception_fails_only_its_request(addr):
    status, body = post(addr, {"texts": ["Anna", "FAIL here"]})
    assert status == 500 and body["error"] == "tagger failed: RuntimeError: boom with a second line"
    assert post(addr, {"text": "Anna again"})[0] == 200
    assert_healthy(addr)


def test_metrics_counts_and_quantiles():
    with live_server(FakeTagger()) as addr:
        for i in range(5):
            assert post(addr, {"texts": [f"Anna {i}", "Bob"]})[0] == 200
        assert post(addr, {"text": ""})[0] == 422
        assert request(addr, "GET", "/nope")[0] == 404
        status, raw = request(addr, "GET", "/metrics")
    metrics = json.loads(raw)
    assert status == 200
    assert metrics["requests_total"] == 6 and metrics["texts_total"] == 10
    assert metrics["errors_by_status"] == {"404": 1, "422": 1}
    assert metrics["batches_total"] >= 5 and metrics["batch_size_max"] >= 2
    assert sum(metrics["batch_size_histogram"].values()) == metrics["batches_total"]
    latency = metrics["latency_ms"]
    assert latency["window"] == 5 and 0 < latency["p50"] <= latency["p90"] <= latency["p99"]
    assert metrics["queue_depth"] == 0 and metrics["peak_rss_bytes"] > 1 << 20


def test_page_has_model_name(addr):
    status, raw = request(addr, "GET", "/")
    page = raw.decode()
    assert status == 200 and f"<h1 id=\"name\">{INFO['name']}</h1>" in page
    assert 'id="text"' in page and 'id="tag"' in page and 'id="result"' in page
    assert "http://" not in page and "https://" not in page  # self-contained


class Marks(HTMLParser):
    """(label, text) of every <mark class="ent" data-label=...> in a page."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, str]] = []
        self._label: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "mark" and a.get("class") == "ent":
            self._label = a.get("data-label")
            self.found.append((self._label or "", ""))

    def handle_data(self, data: str) -> None:
        if self._label is not None:
            self.found[-1] = (self.found[-1][0], self.found[-1][1] + data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "mark":
            self._label = None


@pytest.mark.skipif(_browser.chromium() is None, reason="chromium is not installed: the page's script is not run")
def test_page_tags_prefilled_text_in_headless_chromium(addr):
    text = "Anna 😀 met Bob in Berlin <b>not bold</b>."
    dom = _browser.dump_dom(f"http://{addr[0]}:{addr[1]}/?text={urllib.parse.quote(text)}")
    marks = Marks()
    marks.feed(dom)
    assert marks.found == [("PER", "Anna"), ("PER", "Bob"), ("LOC", "Berlin")]
    assert "&lt;b&gt;not bold&lt;/b&gt;" in dom  # the user's text stayed text


def test_load_benchmark_smoke(addr, tmp_path):
    import serve_load

    texts = tmp_path / "texts.txt"
    texts.write_text("Anna met Bob in Berlin.\n\nnothing here\n", encoding="utf-8")
    url = f"http://{addr[0]}:{addr[1]}"
    argv = ["--url", url, "--texts", str(texts), "--clients", "1,4", "--requests-per-client", "3",
            "--offline-batch64", "100", "--out", str(tmp_path)]
    assert serve_load.main(argv) == 0
    result = json.loads((tmp_path / "serve.json").read_text())
    assert [(r["clients"], r["requests"], r["errors"]) for r in result["levels"]] == [(1, 3, 0), (4, 12, 0)]
    assert all(r["p50_ms"] > 0 and r["texts_per_s"] > 0 and r["peak_rss_bytes"] > 0 for r in result["levels"])
    assert "served/offline" in (tmp_path / "serve.md").read_text()


# -- the real command, over a saved student ------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def xdner_serve(*args: str) -> Iterator[tuple[str, int]]:
    """`xdner serve ARGS` in a subprocess on a free port, until /health answers; stopped after."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "xtremedistil_ner.cli", "serve", *args, "--port", str(port), "--log-level", "warning"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, f"xdner serve exited: {proc.stdout.read()}"
            assert time.monotonic() < deadline, "xdner serve did not answer /health"
            try:
                if request(("127.0.0.1", port), "GET", "/health")[0] == 200:
                    break
            except OSError:
                time.sleep(0.2)
        yield "127.0.0.1", port
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.fixture
def student_dir(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer) -> Path:
    """A tiny student that tags every word B-PER, saved with a card naming it and its languages."""
    from test_tagger import make_student

    from xtremedistil_ner.students import save_student

    path = tmp_path_factory.mktemp("served") / "model"
    save_student(make_student(tiny_tokenizer, winner="B-PER"), path, tiny_tokenizer)
    (path / "README.md").write_text("---\nlanguage:\n- de\n- en\nmodel-index:\n- name: tiny-every-word\n  results:\n"
                                    "  - dataset: {config: de}\n    metrics: [{type: f1, value: 12.5}]\n---\n# tiny\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("onnx", [False, True], ids=["pytorch", "onnx"])
def test_xdner_serve_answers_like_the_tagger(student_dir: Path, tmp_path: Path, onnx: bool) -> None:
    from xtremedistil_ner.export import export_onnx
    from xtremedistil_ner.tagger import Tagger

    texts = ["Anna met Bob in Berlin.", "Zoë (Paris) — 東京!"]
    args = ["--model", str(student_dir)]
    if onnx:
        args += ["--onnx", str(export_onnx(Tagger.load(student_dir).student, tmp_path / "model.onnx"))]
    with xdner_serve(*args) as served:
        status, body = post(served, {"texts": texts})
        assert status == 200
        assert body == [{"text": t, "entities": e} for t, e in zip(texts, Tagger.load(student_dir)(texts))]
        status, raw = request(served, "GET", "/")
        assert status == 200 and "tiny-every-word" in raw.decode()
        assert request(served, "POST", "/tag", b"{not json")[0] == 400


@pytest.mark.skipif(_browser.chromium() is None, reason="chromium is not installed: the page's script is not run")
def test_the_page_of_a_live_xdner_serve_in_headless_chromium(student_dir: Path) -> None:
    """The page served by `xdner serve`, text typed in through the URL, highlighted in Chromium:
    every word of the text is an entity of this student."""
    text = "Anna met Bob in Berlin"
    with xdner_serve("--model", str(student_dir)) as served:
        dom = _browser.dump_dom(f"http://{served[0]}:{served[1]}/?text={urllib.parse.quote(text)}")
    marks = Marks()
    marks.feed(dom)
    assert marks.found == [("PER", word) for word in text.split()]
