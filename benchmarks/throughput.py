"""Tasks completed per second with N node slots vs N parallel raw ``podman run`` loops (goal >= 1.5x, warm containers).

Run: .venv/bin/python -m benchmarks.throughput [--slots 2] [--tasks 40]
"""

from __future__ import annotations

import argparse
import threading
import time

from benchmarks.harness import raw_podman_run, report, stack, wait_done


def floor_rate(slots: int, total: int) -> float:
    per_loop = total // slots
    threads = [threading.Thread(target=lambda: [raw_podman_run() for _ in range(per_loop)]) for _ in range(slots)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return per_loop * slots / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--tasks", type=int, default=40)
    args = parser.parse_args()
    raw_podman_run()
    floor = floor_rate(args.slots, args.tasks)
    with stack(CYNODE_JOB_SLOTS=str(args.slots)) as (_s, client):
        body = {"prompt": "echo hello", "input_mode": "commands"}
        wait_done(client, client.call("POST", "/v1/tasks", json=body)["id"])
        started = time.perf_counter()
        ids = [client.call("POST", "/v1/tasks", json=body)["id"] for _ in range(args.tasks)]
        results = [wait_done(client, i, poll=0.05) for i in ids]
        rate = args.tasks / (time.perf_counter() - started)
        assert all(r["status"] == "completed" for r in results)
    report(f"throughput ({args.slots} slots)", rate, floor, "tasks/s", ">= 1.5x")


if __name__ == "__main__":
    main()
