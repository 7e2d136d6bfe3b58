"""Tokens/s and time to first token through the sandbox inference proxy vs direct to the backend.

Goal: tokens/s through the proxy >= 0.95x direct. The backend is the embedded
llama.cpp server with the bundled model; the proxy is the node's per-job Unix
socket proxy. Both paths stream the same generations (fixed seed) in the same
run, interleaved. Run: .venv/bin/python -m benchmarks.inference_proxy [--runs 8]
"""

from __future__ import annotations

import argparse
import http.client
import json
import tempfile
import time
from pathlib import Path

from benchmarks.harness import percentile, report
from node_agent.inference_policy import InferencePolicy
from node_agent.inference_proxy import InferenceProxy
from node_agent.unix_proxy import UnixHTTPConnection

BODY = {
    "model": "gemma3:270m",
    "prompt": "The history of the printing press",
    "stream": True,
    "options": {"num_predict": 64, "seed": 7, "temperature": 0},
}


def stream(conn: http.client.HTTPConnection) -> tuple[float, float, int]:
    """(time to first token, tokens per second, tokens) of one streamed generation."""
    started = time.perf_counter()
    conn.request("POST", "/api/generate", body=json.dumps(BODY), headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 200, resp.status
    first = None
    tokens = 0
    for line in resp:
        if not line.strip():
            continue
        chunk = json.loads(line)
        if chunk.get("response"):
            tokens += 1
            first = first or time.perf_counter()
        if chunk.get("done"):
            break
    ended = time.perf_counter()
    conn.close()
    assert first is not None
    return first - started, tokens / (ended - started), tokens


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=8)
    args = parser.parse_args()
    from cynode_llamacpp.plugin import create_backend

    home = Path(tempfile.mkdtemp(prefix="cynode-bench-llama-"))
    backend = create_backend({"home": str(home)})
    backend.start()
    proxy = InferenceProxy(home / "proxy" / "bench", backend.base_url, policy=InferencePolicy(tuple(backend.models())))
    proxy.start()
    proxy.wait_ready()
    host, port = backend.base_url.removeprefix("http://").rsplit(":", 1)
    try:
        stream(http.client.HTTPConnection(host, int(port), timeout=120))  # warm-up
        direct, proxied = [], []
        for _ in range(args.runs):
            direct.append(stream(http.client.HTTPConnection(host, int(port), timeout=120)))
            proxied.append(stream(UnixHTTPConnection(proxy.socket_path, timeout=120)))
    finally:
        proxy.close()
        backend.stop()
    # (name, index in a sample, unit, goal): sample = (time to first token, tokens/s)
    for name, index, unit, goal in (
        ("proxy tokens/s p50", 1, "tok/s", ">= 0.95x"),
        ("proxy time to first token p50", 0, "s", "close to 1x"),
    ):
        report(
            name, percentile([p[index] for p in proxied], 50), percentile([d[index] for d in direct], 50), unit, goal
        )


if __name__ == "__main__":
    main()
