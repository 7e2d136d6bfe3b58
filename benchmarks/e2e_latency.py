"""create -> result latency of ``echo hello`` vs a raw hardened ``podman run --rm``.

Three stacks run side by side: the default one, whose node keeps warm
containers and takes jobs with ``jobs:start`` (goal: p50 <= 0.5x the floor,
faster than starting any container; p95 <= 0.8x); one without warm
containers (``CYNODE_WARM_SANDBOXES=0``, goal <= 1.25x); and one without
warm containers on the synchronous ``jobs:run`` (``CYNODE_JOB_REPORTS=false``;
the job reports path against it, goal not slower). Each round runs the floor
and one task on each stack, in an order that rotates, so the machine's
drift falls on all alike; before each probe every warm pool is full again
(a refill is background work a lone job does not wait for). A task's end is
awaited as the CLI's ``--wait`` does, on its event stream.

Run: .venv/bin/python -m benchmarks.e2e_latency [--runs 30]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from contextlib import ExitStack

from benchmarks.harness import percentile, raw_podman_run, report, stack, wait_done, warm_ready
from cynode_core.client import GatewayClient

BODY = {"prompt": "echo hello", "input_mode": "commands"}
SLOTS = 2


def task_seconds(client: GatewayClient) -> float:
    """Create a task and wait for its end as ``cynode task create --wait`` does: its event stream's ``end``."""
    started = time.perf_counter()
    task = client.call("POST", "/v1/tasks", json=BODY)
    status = next(event.json()["status"] for event in client.follow_logs(task["id"]) if event.event == "end")
    took = time.perf_counter() - started
    assert status == "completed", wait_done(client, task["id"])
    return took


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    raw_podman_run()  # warm the image cache
    with ExitStack() as stacks:
        warm_stack, warm = stacks.enter_context(stack(CYNODE_JOB_SLOTS=str(SLOTS)))
        _s, cold = stacks.enter_context(stack(CYNODE_WARM_SANDBOXES="0"))
        _s, sync = stacks.enter_context(stack(CYNODE_WARM_SANDBOXES="0", CYNODE_JOB_REPORTS="false"))
        probes: dict[str, Callable[[], float]] = {
            "floor": raw_podman_run,
            "warm": lambda: task_seconds(warm),
            "cold": lambda: task_seconds(cold),
            "jobs:run": lambda: task_seconds(sync),
        }
        for probe in probes.values():
            probe()  # warm-up
        seconds: dict[str, list[float]] = {name: [] for name in probes}
        names = list(probes)
        for round_no in range(args.runs):
            shift = round_no % len(names)
            for name in names[shift:] + names[:shift]:
                warm_ready(warm_stack, SLOTS)
                seconds[name].append(probes[name]())
    for pct, goal in ((50, "<= 0.5x"), (95, "<= 0.8x")):
        floor = percentile(seconds["floor"], pct)
        report(f"e2e_latency warm (jobs:start) p{pct}", percentile(seconds["warm"], pct), floor, "s", goal)
        report(f"e2e_latency cold (jobs:start) p{pct}", percentile(seconds["cold"], pct), floor, "s", "<= 1.25x")
        report(f"e2e_latency cold (jobs:run) p{pct}", percentile(seconds["jobs:run"], pct), floor, "s", "<= 1.25x")
        report(
            f"e2e_latency cold jobs:start vs jobs:run p{pct}",
            percentile(seconds["cold"], pct),
            percentile(seconds["jobs:run"], pct),
            "s",
            "<= 1.05x" if pct == 50 else "about 1x",
        )


if __name__ == "__main__":
    main()
