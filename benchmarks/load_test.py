"""Load test: N concurrent clients log in, create a command task, poll it and read its result.

Run: .venv/bin/python -m benchmarks.load_test [--clients 200] [--seconds 60] [--slots 2]

A real stack (embedded PostgreSQL, orchestrator, one node agent with Podman)
on loopback. Two phases with the same clients and the same connection pool:

1. floor: every client requests ``GET /healthz`` back to back for
   ``--floor-seconds`` (the bare HTTP stack: waitress, Flask, no database);
2. load: every client loops login -> ``POST /v1/tasks`` (``echo hello``) ->
   ``GET /v1/tasks/{id}`` every ``--poll-interval`` until it is terminal ->
   ``GET /v1/tasks/{id}/result`` for ``--seconds``; iterations in flight at
   the end get ``--drain`` more seconds to finish (``--login-once``: one
   login per client instead of one per task, as the CLI's stored tokens do).

Throughput (requests/s) and p99 latency of the load phase are printed as
ratios against the floor. Every error is counted by kind and the run exits 1
if there was any; 0 errors is the expectation. A 503 with ``Retry-After`` is
back-pressure, not an error: the client waits as told and sends again (counted
apart), unless the wait would end after the drain. The clients share one bounded
urllib3 pool (``--pool`` connections); the wait for a free connection is part
of each request's latency, as it is for any pooled client. The default pool
(64) stays under waitress's limit of 100 open connections per server: with
more, the connections beyond the limit wait unaccepted while the others are
kept alive, and their clients time out. Client and stack share the machine's
cores: the CPU each used is printed too.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import psutil
import urllib3

from benchmarks.harness import percentile, stack, wait_done

TERMINAL = {"completed", "failed", "canceled", "superseded"}
TASK = {"prompt": "echo hello", "input_mode": "commands"}
# The default (60 per client address per minute) would refuse most logins here:
# every client comes from 127.0.0.1. Raised for this run only, and said so.
LOGIN_RATE = "1000000"
GOAL_P99_RATIO = 10.0  # issue 16: creates and polls within 10x the /healthz p99 of the same run


@dataclass
class Sample:
    kind: str
    ended: float
    seconds: float


@dataclass
class ClientStats:
    """One client thread's record, merged after the run (no shared lock on the hot path)."""

    samples: list[Sample] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    deferred: Counter[str] = field(default_factory=Counter)  # 503 + Retry-After answers, waited out
    iterations: list[Sample] = field(default_factory=list)
    unfinished: int = 0


class Api:
    """JSON calls over the shared pool; any unexpected answer is an error of its kind, never raised."""

    def __init__(self, pool: urllib3.HTTPConnectionPool, deadline: float = float("inf")):
        self.pool = pool
        self.deadline = deadline  # a 503 + Retry-After is waited out while the wait ends before this

    def call(
        self,
        stats: ClientStats,
        kind: str,
        method: str,
        path: str,
        *,
        expect: int,
        body: dict[str, Any] | None = None,
        token: str | None = None,
    ) -> Any:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        while True:
            started = time.perf_counter()
            try:
                resp = self.pool.request(
                    method, path, body=json.dumps(body) if body is not None else None, headers=headers, retries=False
                )
            except urllib3.exceptions.HTTPError as exc:
                stats.errors[f"{kind}: {type(exc).__name__}"] += 1
                return None
            ended = time.perf_counter()
            stats.samples.append(Sample(kind, ended, ended - started))
            wait = resp.headers.get("Retry-After") if resp.status == 503 else None
            if wait is None or not wait.isdigit() or time.perf_counter() + int(wait) > self.deadline:
                break
            # Back-pressure, as any client should take it: wait as told (spread a little), send again.
            stats.deferred[kind] += 1
            time.sleep(int(wait) * random.uniform(1.0, 1.5))
        if resp.status != expect:
            stats.errors[f"{kind}: HTTP {resp.status}"] += 1
            return None
        try:
            return json.loads(resp.data) if resp.data and kind != "healthz" else resp.data
        except ValueError:
            stats.errors[f"{kind}: body is not JSON"] += 1
            return None


def healthz_client(api: Api, stats: ClientStats, end: float) -> None:
    while time.perf_counter() < end:
        api.call(stats, "healthz", "GET", "/healthz", expect=200)


def task_client(
    api: Api,
    stats: ClientStats,
    password: str,
    poll_interval: float,
    load_end: float,
    drain_end: float,
    login_once: bool = False,
) -> None:
    token = None
    while time.perf_counter() < load_end:
        started = time.perf_counter()
        if token is None or not login_once:
            tokens = api.call(
                stats, "login", "POST", "/v1/auth/login", expect=200, body={"handle": "admin", "password": password}
            )
            if tokens is None:
                time.sleep(0.1)  # an error is counted; do not spin on it
                continue
            token = tokens["access_token"]
        task = api.call(stats, "create", "POST", "/v1/tasks", expect=201, body=TASK, token=token)
        if task is None:
            time.sleep(0.1)
            continue
        status = task.get("status")
        while status not in TERMINAL:
            if time.perf_counter() >= drain_end:
                stats.unfinished += 1
                return
            time.sleep(poll_interval)
            polled = api.call(stats, "poll", "GET", f"/v1/tasks/{task['id']}", expect=200, token=token)
            status = polled.get("status") if polled else status
        result = api.call(stats, "result", "GET", f"/v1/tasks/{task['id']}/result", expect=200, token=token)
        if result is None:
            continue
        if result.get("status") != "completed":
            stats.errors[f"result: task {result.get('status')}"] += 1
            continue
        ended = time.perf_counter()
        stats.iterations.append(Sample("iteration", ended, ended - started))


def run_clients(count: int, work: Callable[[ClientStats], None], *, join_by: float) -> list[ClientStats]:
    """Run ``work`` in ``count`` threads, each with its own stats; wait until ``join_by`` (+5 s) at most."""
    stats = [ClientStats() for _ in range(count)]
    threads = [threading.Thread(target=work, args=(s,), daemon=True) for s in stats]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, join_by - time.perf_counter()) + 5.0)
    stuck = sum(t.is_alive() for t in threads)
    if stuck:
        stats[0].errors[f"client thread still blocked after the deadline (x{stuck})"] += 1
    return stats


@dataclass
class Phase:
    samples: list[Sample]
    errors: Counter[str]
    deferred: Counter[str]
    iterations: list[Sample]
    unfinished: int
    cpu_client: float  # cores used by this process
    cpu_machine: float  # cores used by the whole machine


def merge(stats: list[ClientStats], cpu_client: float, cpu_machine: float) -> Phase:
    errors: Counter[str] = Counter()
    deferred: Counter[str] = Counter()
    for s in stats:
        errors.update(s.errors)
        deferred.update(s.deferred)
    return Phase(
        [x for s in stats for x in s.samples],
        errors,
        deferred,
        [x for s in stats for x in s.iterations],
        sum(s.unfinished for s in stats),
        cpu_client,
        cpu_machine,
    )


class CpuMeter:
    """Cores used by this process and by the whole machine between start and stop."""

    def __enter__(self) -> CpuMeter:
        self._proc, self._wall = time.process_time(), time.perf_counter()
        self._busy = self._machine_busy()
        return self

    def __exit__(self, *_exc: object) -> None:
        wall = time.perf_counter() - self._wall
        self.client = (time.process_time() - self._proc) / wall
        self.machine = (self._machine_busy() - self._busy) / wall

    @staticmethod
    def _machine_busy() -> float:
        t = psutil.cpu_times()
        return t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)


def in_window(samples: list[Sample], start: float, end: float) -> list[Sample]:
    return [s for s in samples if start <= s.ended <= end]


def ratio(name: str, value: float, floor: float, unit: str, note: str) -> None:
    """``harness.report``'s line with three significant digits: these ratios are far from 1."""
    print(f"{name}: {value:.4g} {unit} vs floor {floor:.4g} {unit} -> ratio {value / floor:.3g}x ({note})")


def pct(values: list[float], p: float) -> float:
    return percentile(values, p) if values else float("nan")


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=200, help="concurrent clients (threads)")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the load phase")
    parser.add_argument("--floor-seconds", type=float, default=15.0, help="length of the /healthz floor phase")
    parser.add_argument("--drain", type=float, default=120.0, help="extra seconds for iterations in flight at the end")
    parser.add_argument("--poll-interval", type=float, default=0.25, help="think time between polls (as the CLI)")
    parser.add_argument("--pool", type=int, default=64, help="connections in the shared client pool")
    parser.add_argument("--slots", type=int, default=2, help="CYNODE_JOB_SLOTS of the node")
    parser.add_argument(
        "--login-once", action="store_true", help="log in once per client, not once per task (as the CLI does)"
    )
    args = parser.parse_args()

    password = secrets.token_urlsafe(12)
    settings = {
        "CYNODE_ADMIN_PASSWORD": password,
        "CYNODE_LOGIN_RATE_PER_MINUTE": LOGIN_RATE,
        "CYNODE_JOB_SLOTS": str(args.slots),
        "CYNODE_INFERENCE_BACKEND": "none",  # command tasks only: no model server on the machine
    }
    print(
        f"load test: {args.clients} clients, floor {args.floor_seconds:g} s then load {args.seconds:g} s "
        f"(+ up to {args.drain:g} s drain), pool {args.pool} connections, poll every {args.poll_interval:g} s; "
        f"{os.cpu_count()} cores shared by client and stack"
    )
    print(
        "stack: 1 node, " + ", ".join(f"{k}={v}" for k, v in settings.items() if k != "CYNODE_ADMIN_PASSWORD") + "; "
        "login throttle raised from its default of 60/min per address (every client is 127.0.0.1); "
        f"all clients log in as admin, {'once each' if args.login_once else 'before every task'}",
        flush=True,
    )
    with stack(nodes=1, **settings) as (s, client):
        url = urlsplit(s.gateway_url)
        assert url.hostname == "127.0.0.1", url
        wait_done(client, client.call("POST", "/v1/tasks", json=TASK)["id"])  # warm the image and the dispatcher
        pool = urllib3.HTTPConnectionPool(
            url.hostname,
            url.port,
            maxsize=args.pool,
            block=True,
            timeout=urllib3.Timeout(connect=10.0, read=30.0),
        )
        api = Api(pool)

        floor_start = time.perf_counter()
        floor_end = floor_start + args.floor_seconds
        with CpuMeter() as cpu:
            floor_stats = run_clients(
                args.clients, lambda st: healthz_client(api, st, floor_end), join_by=floor_end + 30
            )
        floor = merge(floor_stats, cpu.client, cpu.machine)

        load_start = time.perf_counter()
        load_end, drain_end = load_start + args.seconds, load_start + args.seconds + args.drain
        api.deadline = drain_end  # past it, a refused request is an error: the client gave up
        with CpuMeter() as cpu:
            stats = run_clients(
                args.clients,
                lambda st: task_client(api, st, password, args.poll_interval, load_end, drain_end, args.login_once),
                join_by=drain_end + 30,
            )
            drained = time.perf_counter()
        load = merge(stats, cpu.client, cpu.machine)
        s.check_alive()

    floor_samples = in_window(floor.samples, floor_start, floor_end)
    floor_rate = len(floor_samples) / args.floor_seconds
    floor_p99 = pct([x.seconds for x in floor_samples], 99)
    print(
        f"\nfloor /healthz: {len(floor_samples)} requests, {floor_rate:.1f} req/s, "
        f"p50 {ms(pct([x.seconds for x in floor_samples], 50))}, p99 {ms(floor_p99)}, "
        f"errors {sum(floor.errors.values())}; CPU: client {floor.cpu_client:.2f} cores, "
        f"machine {floor.cpu_machine:.2f} cores"
    )

    window = in_window(load.samples, load_start, load_end)
    done = in_window(load.iterations, load_start, load_end)
    print(
        f"load: {len(window)} requests in {args.seconds:g} s ({len(window) / args.seconds:.1f} req/s), "
        f"{len(done)} tasks done ({len(done) / args.seconds:.2f} tasks/s), "
        f"{len(load.iterations) - len(done)} more finished in {drained - load_end:.1f} s of drain, "
        f"{load.unfinished} unfinished; CPU: client {load.cpu_client:.2f} cores, machine {load.cpu_machine:.2f} cores"
    )
    for kind in ("login", "create", "poll", "result"):
        values = [x.seconds for x in window if x.kind == kind]
        if values:
            print(
                f"  {kind:7s} {len(values):7d} requests  p50 {ms(percentile(values, 50)):>10s}  "
                f"p99 {ms(percentile(values, 99)):>10s}  (p99 {percentile(values, 99) / floor_p99:.1f}x floor p99)"
                + (f"; {load.deferred[kind]} answered 503 + Retry-After, waited out" if load.deferred[kind] else "")
            )
    if done:
        cycle = [x.seconds for x in done]
        print(f"  task cycle (login..result) p50 {percentile(cycle, 50):.2f} s, p99 {percentile(cycle, 99):.2f} s")

    errors = floor.errors + load.errors
    if load.unfinished:
        errors[f"task not done {args.drain:g} s after the end"] += load.unfinished
    total = sum(errors.values())
    print(f"errors: {total} (expected 0)")
    for kind, count in errors.most_common():
        print(f"  {count:7d}  {kind}")

    print()
    p99 = pct([x.seconds for x in window], 99)
    note = "informational; the goal is 0 errors"
    ratio("throughput (API requests)", len(window) / args.seconds, floor_rate, "req/s", note)
    ratio("p99 latency (API requests)", p99, floor_p99, "s", note)
    for kind, label in (("create", "POST /v1/tasks"), ("poll", "GET /v1/tasks/{id}")):
        values = [x.seconds for x in window if x.kind == kind]
        if values:
            ratio(f"p99 {label}", percentile(values, 99), floor_p99, "s", f"goal <= {GOAL_P99_RATIO:g}x")
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main())
