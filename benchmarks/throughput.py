"""Tasks completed per second with N node slots vs N parallel raw ``podman run`` loops (goal >= 1.5x, warm containers).

Run: .venv/bin/python -m benchmarks.throughput [--slots 2] [--tasks 40]

Beside the ratio, each part prints the machine's CPU time per task (all
processes, from ``/proc/stat``), and a second floor shows what Podman
itself costs: N threads that drive Podman's API directly (a private
``podman system service``, podman-py, the same hardened flags as the raw
floor: create, start, wait, logs, remove), no cynode in between. When the
machine's cores are busy throughout, the rate is the cores over the CPU
time per task, whatever the concurrency.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from cynode_podman.service import PodmanService
from podman import PodmanClient

from benchmarks.harness import HARDENED_API, SANDBOX_IMAGE, busy_seconds, raw_podman_run, report, stack, wait_done


def loops(threads: int, total: int, one: Callable[[], object]) -> tuple[float, float]:
    """(runs per second, busy CPU seconds per run) of ``threads`` loops doing ``one`` ``total`` times in all."""
    per_loop = total // threads
    workers = [threading.Thread(target=lambda: [one() for _ in range(per_loop)]) for _ in range(threads)]
    busy, started = busy_seconds(), time.perf_counter()
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    elapsed, spent = time.perf_counter() - started, busy_seconds() - busy
    return per_loop * threads / elapsed, spent / (per_loop * threads)


def api_run(client: PodmanClient) -> None:
    """One hardened container through Podman's API: the least any runtime plugin of it does per job."""
    container = client.containers.create(SANDBOX_IMAGE, ["sh", "-c", "echo hello"], **HARDENED_API)
    try:
        container.start()
        container.wait()
        b"".join(container.logs(stdout=True, stderr=True))
    finally:
        container.remove(force=True)


def api_floor(threads: list[int], total: int) -> list[tuple[float, float]]:
    """:func:`loops` of :func:`api_run` with each number of ``threads``, on one private Podman service."""
    service = PodmanService(Path(tempfile.mkdtemp(prefix="cynode-bench-podman-")))
    client = PodmanClient(base_url=service.start(), max_pool_size=64)
    client.api.trust_env = False
    try:
        api_run(client)  # the service's first call pays its start
        return [loops(n, total, lambda: api_run(client)) for n in threads]
    finally:
        client.close()
        service.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--tasks", type=int, default=40)
    args = parser.parse_args()
    raw_podman_run()
    floor, floor_cpu = loops(args.slots, args.tasks, raw_podman_run)
    # With as many loops as slots, and with four times as many: Podman's own best on this machine.
    (api, api_cpu), (api_most, _) = api_floor([args.slots, 4 * args.slots], args.tasks)
    with stack(CYNODE_JOB_SLOTS=str(args.slots)) as (_s, client):
        body = {"prompt": "echo hello", "input_mode": "commands"}
        wait_done(client, client.call("POST", "/v1/tasks", json=body)["id"])
        busy, started = busy_seconds(), time.perf_counter()
        ids = [client.call("POST", "/v1/tasks", json=body)["id"] for _ in range(args.tasks)]
        results = [wait_done(client, i, poll=0.05) for i in ids]
        rate = args.tasks / (time.perf_counter() - started)
        cpu = (busy_seconds() - busy) / args.tasks
        assert all(r["status"] == "completed" for r in results)
    print(
        f"throughput CPU per task (all processes): cynode {cpu * 1000:.0f} ms, "
        f"raw podman run {floor_cpu * 1000:.0f} ms, Podman's API alone {api_cpu * 1000:.0f} ms"
    )
    report(f"throughput ({args.slots} slots)", rate, floor, "tasks/s", ">= 1.5x")
    report(f"throughput of Podman's API alone ({args.slots} loops)", api, floor, "runs/s", "for the record")
    report(f"throughput of Podman's API alone ({4 * args.slots} loops)", api_most, floor, "runs/s", "for the record")


if __name__ == "__main__":
    main()
