"""create -> result latency of ``echo hello`` vs a raw hardened ``podman run --rm`` (goal <= 1.25x).

Two stacks run side by side: one whose node takes jobs with ``jobs:start``
and reports their end (the default), one on the synchronous ``jobs:run``
(``CYNODE_JOB_REPORTS=false``). Each round runs the floor and one task on
each stack, in an order that rotates, so the machine's drift falls on all
three alike. Besides each path's ratio to the floor, the run prints the job
reports path against ``jobs:run`` (goal: not slower, <= 1.05x at p50).

Run: .venv/bin/python -m benchmarks.e2e_latency [--runs 30]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from contextlib import ExitStack

from benchmarks.harness import percentile, raw_podman_run, report, stack, wait_done
from cynode_core.client import GatewayClient

BODY = {"prompt": "echo hello", "input_mode": "commands"}


def task_seconds(client: GatewayClient) -> float:
    started = time.perf_counter()
    task = client.call("POST", "/v1/tasks", json=BODY)
    result = wait_done(client, task["id"])
    assert result["status"] == "completed", result
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    raw_podman_run()  # warm the image cache
    with ExitStack() as stacks:
        _s, reports = stacks.enter_context(stack())
        _s, sync = stacks.enter_context(stack(CYNODE_JOB_REPORTS="false"))
        probes: dict[str, Callable[[], float]] = {
            "floor": raw_podman_run,
            "jobs:start": lambda: task_seconds(reports),
            "jobs:run": lambda: task_seconds(sync),
        }
        for probe in probes.values():
            probe()  # warm-up
        seconds: dict[str, list[float]] = {name: [] for name in probes}
        names = list(probes)
        for round_no in range(args.runs):
            shift = round_no % len(names)
            for name in names[shift:] + names[:shift]:
                seconds[name].append(probes[name]())
    for pct in (50, 95):
        floor = percentile(seconds["floor"], pct)
        for path in ("jobs:start", "jobs:run"):
            report(f"e2e_latency {path} p{pct}", percentile(seconds[path], pct), floor, "s", "<= 1.25x")
        report(
            f"e2e_latency jobs:start vs jobs:run p{pct}",
            percentile(seconds["jobs:start"], pct),
            percentile(seconds["jobs:run"], pct),
            "s",
            "<= 1.05x" if pct == 50 else "about 1x",
        )


if __name__ == "__main__":
    main()
