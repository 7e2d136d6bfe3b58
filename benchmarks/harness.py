"""Shared benchmark pieces: a throw-away cynode stack, the Podman floor, percentiles.

Benchmarks print each figure as a ratio against a floor measured in the same
run, so results compare across machines. Everything runs on loopback.
"""

from __future__ import annotations

import os
import secrets
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from cynode_core.cli.stack import Stack
from cynode_core.client import GatewayClient
from cynode_core.orchestrator.settings import OrchestratorSettings
from cynode_core.settings import load_settings

SANDBOX_IMAGE = "localhost/cynode-sandbox:busybox"
HARDENED = [
    "--network",
    "none",
    "--user",
    "65534:65534",
    "--cap-drop",
    "all",
    "--security-opt",
    "no-new-privileges",
    "--read-only",
    "--pids-limit",
    "256",
    "--memory",
    "512m",
]
# The same flags as podman-py's ``containers.create`` keywords (the throughput benchmark's API floor):
# change both together.
HARDENED_API = {
    "network_mode": "none",
    "user": "65534:65534",
    "cap_drop": ["all"],
    "security_opt": ["no-new-privileges"],
    "read_only": True,
    "pids_limit": 256,
    "mem_limit": "512m",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def podman_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("CONTAINERS_CONF", "/etc/cynode/containers.conf")
    return env


def raw_podman_run(command: str = "echo hello") -> float:
    """Seconds for one hardened ``podman run --rm`` of the sandbox image (the floor)."""
    started = time.perf_counter()
    subprocess.run(
        ["podman", "run", "--rm", *HARDENED, SANDBOX_IMAGE, "sh", "-c", command],
        env=podman_env(),
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


@contextmanager
def stack(nodes: int = 1, home: Path | None = None, **env: str) -> Iterator[tuple[Stack, GatewayClient]]:
    """An embedded-PostgreSQL stack in ``home`` (default: a new temporary one), logged in as admin."""
    home = home or Path(tempfile.mkdtemp(prefix="cynode-bench-"))
    password_file = home / "bench-admin-password"
    if not password_file.exists():  # the home's admin is made once, at its first start
        home.mkdir(parents=True, exist_ok=True)
        password_file.write_text(secrets.token_urlsafe(12))
    overrides = {
        "CYNODE_HOME": str(home),
        "CYNODE_GATEWAY_LISTEN": f"127.0.0.1:{free_port()}",
        "CYNODE_CONTROL_LISTEN": f"127.0.0.1:{free_port()}",
        "CYNODE_ADMIN_PASSWORD": password_file.read_text(),
        "CYNODE_DISPATCH_WORKERS": "8",
        "CYNODE_DISPATCH_POLL_INTERVAL": "0.5",
        "CYNODE_LOG_LEVEL": "WARNING",
        **env,
    }
    saved = {k: os.environ.get(k) for k in overrides}
    os.environ.update(overrides)
    try:
        settings: OrchestratorSettings = load_settings(OrchestratorSettings)
        s = Stack(settings, nodes=nodes, base_port=free_port(), progress=lambda _t: None)
        s.start()
        try:
            client = GatewayClient(s.gateway_url, store=home / "credentials.json")
            client.login("admin", overrides["CYNODE_ADMIN_PASSWORD"])
            yield s, client
        finally:
            s.stop()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def wait_done(client: GatewayClient, task_id: str, timeout: float = 120.0, poll: float = 0.01) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = client.call("GET", f"/v1/tasks/{task_id}/result")
        if result["status"] in ("completed", "failed", "canceled"):
            return result
        time.sleep(poll)
    raise TimeoutError(f"task {task_id} not done in {timeout} s")


def warm_ready(s: Stack, count: int, timeout: float = 60.0) -> None:
    """Until every node of ``s`` has ``count`` warm containers waiting (its ``/metrics``)."""
    deadline = time.monotonic() + timeout
    for i in range(s.nodes):
        url = f"http://127.0.0.1:{s.base_port + i}/metrics"
        while _warm_gauge(url) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"node {i}: fewer than {count} warm containers after {timeout} s")
            time.sleep(0.05)


def _warm_gauge(url: str) -> float:
    for line in requests.get(url, timeout=10).text.splitlines():
        if line.startswith("cynode_node_warm_sandboxes "):
            return float(line.split()[1])
    return 0.0


def busy_seconds() -> float:
    """CPU seconds all processes of the machine have spent so far, over every core (``/proc/stat``)."""
    with open("/proc/stat", encoding="ascii") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq = fields[:7]
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def report(name: str, value: float, floor: float, unit: str, goal: str) -> None:
    ratio = value / floor if floor else float("inf")
    print(f"{name}: {value:.4f} {unit} vs floor {floor:.4f} {unit} -> ratio {ratio:.2f}x (goal {goal})")


__all__ = ["busy_seconds", "percentile", "raw_podman_run", "report", "stack", "statistics", "wait_done", "warm_ready"]
