"""Load test of `xdner serve` on localhost: for each number of concurrent clients N (default 1, 8
and 64), every client sends `--requests-per-client` requests of one text each, back to back over
its own keep-alive connection (so level N sends N x requests-per-client requests). Reports per N
the throughput (texts/s over the level's wall time), client-side p50/p99 latency, errors (must be
0: the exit status is 1 otherwise), the server's mean batch size in that level (from /metrics) and
its peak RSS (VmHWM of the process when this script started it, else /metrics' peak_rss_bytes).

Writes serve.json and serve.md to --out. With the tagger's offline throughput at batch 64
(`--offline-batch64 TEXTS_PER_S`, or measured with `offline_throughput` when --model is given)
it also reports served/offline per N.

    python benchmarks/serve_load.py --url http://127.0.0.1:8000 --texts texts.txt --out results/serve
    python benchmarks/serve_load.py --model students/NAME/joint/model --onnx model.int8.onnx --texts texts.txt --out results/serve

Standard library and numpy only, so it runs in the torch-free runtime distribution.
"""

from __future__ import annotations

import argparse
import http.client
import json
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def offline_throughput(tagger: Callable[[list[str]], Any], texts: Sequence[str], batch: int = 64) -> float:
    """Texts/s of `tagger` called directly on `texts` in batches of `batch`: the ceiling serving is
    compared with. The first batch warms up and is not timed."""
    tagger(list(texts[:batch]))
    started = time.perf_counter()
    for i in range(0, len(texts), batch):
        tagger(list(texts[i:i + batch]))
    return len(texts) / (time.perf_counter() - started)


def load_tagger(model: Path, onnx: Path | None) -> Callable[[list[str]], Any]:
    """The tagger the server loads from `--model DIR [--onnx FILE]` (default DIR/model.onnx, where
    `xdner export` writes), for the offline number."""
    from xdner_runtime import Tagger

    return Tagger.load(str(model), onnx=str(onnx or model / "model.onnx"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str, path: str) -> Any:
    with urllib.request.urlopen(urllib.parse.urljoin(url, path), timeout=30) as response:
        return json.load(response)


def start_server(model: Path, onnx: Path | None, port: int) -> subprocess.Popen:
    """The server as a child process, returned once /health answers: `xdner-serve` of the torch-free
    runtime, else `xdner serve` of the full package."""
    if runtime := shutil.which("xdner-serve"):
        command = [runtime]
    elif xdner := shutil.which("xdner"):
        command = [xdner, "serve"]
    else:
        sys.exit("serve_load: neither xdner-serve nor xdner is on PATH (install one, or pass --url)")
    command += ["--model", str(model), "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]  # no access log per request
    proc = subprocess.Popen(command + (["--onnx", str(onnx)] if onnx else []))
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"serve_load: `{' '.join(command)}` exited with {proc.returncode} before answering /health")
        try:
            get_json(f"http://127.0.0.1:{port}/", "/health")
            return proc
        except OSError:
            time.sleep(0.5)
    proc.terminate()
    sys.exit("serve_load: the server did not answer /health within 300 s")


def peak_rss(url: str, proc: subprocess.Popen | None) -> int | None:
    """The server's peak resident memory in bytes so far."""
    if proc is not None:
        for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        return None
    return get_json(url, "/metrics").get("peak_rss_bytes")


def run_level(url: str, texts: Sequence[str], clients: int, per_client: int) -> dict[str, Any]:
    """N clients at once, each sending `per_client` one-text requests over one keep-alive connection."""
    parts = urllib.parse.urlsplit(url)
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    barrier = threading.Barrier(clients + 1)

    def client(c: int) -> None:
        conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=120)
        barrier.wait()
        for j in range(per_client):
            body = json.dumps({"text": texts[(c * per_client + j) % len(texts)]}).encode()
            started = time.perf_counter()
            try:
                conn.request("POST", "/tag", body=body, headers={"Content-Type": "application/json"})
                response = conn.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()  # reconnects on the next request
            if ok:
                latencies[c].append((time.perf_counter() - started) * 1000)
            else:
                errors[c] += 1
        conn.close()

    before = get_json(url, "/metrics")
    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    after = get_json(url, "/metrics")
    done = np.array([x for per in latencies for x in per])
    batches = after["batches_total"] - before["batches_total"]
    return {
        "clients": clients, "requests": clients * per_client, "errors": sum(errors), "wall_s": round(wall, 3),
        "texts_per_s": round(len(done) / wall, 2),
        "p50_ms": round(float(np.percentile(done, 50)), 2) if len(done) else None,
        "p99_ms": round(float(np.percentile(done, 99)), 2) if len(done) else None,
        "mean_batch": round((after["texts_total"] - before["texts_total"]) / batches, 2) if batches else None,
    }


def markdown(result: dict[str, Any]) -> str:
    offline = result["offline_batch64_texts_per_s"]
    head = ["clients", "requests", "texts/s", "p50 ms", "p99 ms", "errors", "mean batch", "peak RSS MiB"]
    rows = [[r["clients"], r["requests"], r["texts_per_s"], r["p50_ms"], r["p99_ms"], r["errors"], r["mean_batch"],
             round(r["peak_rss_bytes"] / 2**20, 1) if r["peak_rss_bytes"] else "?"] for r in result["levels"]]
    if offline:
        head.append("served/offline")
        for row, r in zip(rows, result["levels"]):
            row.append(f"{r['texts_per_s'] / offline:.2f}")
    lines = [f"# xdner serve load test\n\n{result['server']}; {result['texts']} texts from {result['texts_file']}; "
             f"{result['requests_per_client']} requests per client, one text each."
             + (f" Offline tagger at batch 64: {offline:.1f} texts/s." if offline else "") + "\n",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(x) for x in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--url", help="a running server, e.g. http://127.0.0.1:8000")
    target.add_argument("--model", type=Path, help="start `xdner-serve --model DIR` (or `xdner serve`) on a free port for the test")
    parser.add_argument("--onnx", type=Path, help="with --model: serve this ONNX graph")
    parser.add_argument("--texts", type=Path, required=True, help="one text per line (blank lines skipped)")
    parser.add_argument("--clients", default="1,8,64", help="comma-separated concurrency levels")
    parser.add_argument("--requests-per-client", type=int, default=50)
    parser.add_argument("--offline-batch64", type=float, help="the tagger's offline texts/s at batch 64 (measured when --model is given)")
    parser.add_argument("--out", type=Path, required=True, help="folder for serve.json and serve.md")
    args = parser.parse_args(argv)
    if args.onnx and not args.model:
        parser.error("--onnx needs --model")
    texts = [line for line in args.texts.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not texts:
        parser.error(f"{args.texts} has no text")
    offline = args.offline_batch64
    if offline is None and args.model:  # before the server starts, so the two do not share the CPU
        offline = offline_throughput(load_tagger(args.model, args.onnx), texts)
    if args.model:
        port = free_port()
        url, proc = f"http://127.0.0.1:{port}/", start_server(args.model, args.onnx, port)
    else:
        url, proc = args.url, None
    try:
        levels = []
        for clients in (int(c) for c in args.clients.split(",")):
            level = run_level(url, texts, clients, args.requests_per_client)
            level["peak_rss_bytes"] = peak_rss(url, proc)
            levels.append(level)
            ratio = f", {level['texts_per_s'] / offline:.2f}x offline" if offline else ""
            print(f"{clients:>4} clients: {level['texts_per_s']:.1f} texts/s, p50 {level['p50_ms']} ms, "
                  f"p99 {level['p99_ms']} ms, {level['errors']} errors{ratio}", flush=True)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)
    result = {"server": f"started: {shlex.join(proc.args)}" if proc else f"external: {url}",
              "texts_file": str(args.texts), "texts": len(texts), "requests_per_client": args.requests_per_client,
              "offline_batch64_texts_per_s": offline, "levels": levels}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "serve.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "serve.md").write_text(markdown(result))
    print(f"wrote {args.out / 'serve.json'} and {args.out / 'serve.md'}")
    return 1 if any(level["errors"] for level in levels) else 0


if __name__ == "__main__":
    sys.exit(main())
