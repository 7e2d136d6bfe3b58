"""create -> result latency of ``echo hello`` vs a raw hardened ``podman run --rm`` (goal <= 1.25x).

Run: .venv/bin/python -m benchmarks.e2e_latency [--runs 30]
"""

from __future__ import annotations

import argparse
import time

from benchmarks.harness import percentile, raw_podman_run, report, stack, wait_done


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    raw_podman_run()  # warm the image cache
    floor = [raw_podman_run() for _ in range(args.runs)]
    with stack() as (_s, client):
        body = {"prompt": "echo hello", "input_mode": "commands"}
        wait_done(client, client.call("POST", "/v1/tasks", json=body)["id"])  # warm-up
        latencies = []
        for _ in range(args.runs):
            started = time.perf_counter()
            task = client.call("POST", "/v1/tasks", json=body)
            result = wait_done(client, task["id"])
            latencies.append(time.perf_counter() - started)
            assert result["status"] == "completed", result
    for pct in (50, 95):
        report(f"e2e_latency p{pct}", percentile(latencies, pct), percentile(floor, pct), "s", "<= 1.25x")


if __name__ == "__main__":
    main()
