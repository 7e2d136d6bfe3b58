"""Every slot busy: N nodes x S slots of ``sleep 5`` at once vs as many raw ``podman run`` at once (goal about 1x).

The floor starts all N x S hardened ``podman run --rm ... sleep 5`` side by
side and waits for the last; cynode gets the same number of tasks created
back to back on N nodes with S slots each, from the first create to the last
result. A dispatcher that held a thread per running job would show waves of
``CYNODE_DISPATCH_WORKERS`` (8) here; ``--sync`` runs the nodes without job
reports (``jobs:run``, a thread per job) to show that path next to it.

Run: .venv/bin/python -m benchmarks.slots [--nodes 1] [--slots 24] [--sync]
"""

from __future__ import annotations

import argparse
import threading
import time

from benchmarks.harness import raw_podman_run, report, stack, wait_done

COMMAND = "sleep 5"


def floor_seconds(count: int) -> float:
    threads = [threading.Thread(target=raw_podman_run, args=(COMMAND,)) for _ in range(count)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=1)
    parser.add_argument("--slots", type=int, default=24)
    parser.add_argument("--sync", action="store_true", help="nodes without job reports (jobs:run)")
    args = parser.parse_args()
    count = args.nodes * args.slots
    raw_podman_run()  # warm the image cache
    floor = floor_seconds(count)
    env = {"CYNODE_JOB_SLOTS": str(args.slots), "CYNODE_JOB_REPORTS": "false" if args.sync else "true"}
    with stack(nodes=args.nodes, **env) as (_s, client):
        body = {"prompt": COMMAND, "input_mode": "commands"}
        wait_done(client, client.call("POST", "/v1/tasks", json={**body, "prompt": "true"})["id"])  # warm-up
        started = time.perf_counter()
        tasks = [client.call("POST", "/v1/tasks", json=body)["id"] for _ in range(count)]
        results = [wait_done(client, task, timeout=300, poll=0.05) for task in tasks]
        took = time.perf_counter() - started
    assert all(r["status"] == "completed" for r in results), [r["status"] for r in results]
    path = "jobs:run" if args.sync else "jobs:start"
    report(f"slots {args.nodes}x{args.slots} {COMMAND} ({path})", took, floor, "s", "about 1x")


if __name__ == "__main__":
    main()
