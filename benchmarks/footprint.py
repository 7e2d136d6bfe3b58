"""Idle footprint: the orchestrator's and a node agent's resident memory, and how long ``cynode up`` takes to be ready.

Run: .venv/bin/python -m benchmarks.footprint [--idle 15]

A ``cynode up`` stack (embedded PostgreSQL, the orchestrator, one node with
the embedded model) in a temporary home, its images already built. The
figures: the time from the start to every ``/readyz`` answering 200, at the
home's first start (its database made) and at the next (goal < 5 s); after ``--idle`` seconds of nothing, the orchestrator process's RSS
(goal <= 150 MB; PostgreSQL is its own processes, not counted) and the node
agent's RSS beyond the model file pages it maps (goal <= 100 MB beyond the
model). The floor, measured in the same run, is a bare Python interpreter:
its RSS once started, and its start time.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from benchmarks.harness import report, stack

MB = 1024 * 1024


def bare_python() -> tuple[float, float]:
    """A bare interpreter's (RSS in MB, start-to-exit seconds)."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    start_seconds = time.perf_counter() - started
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        time.sleep(1.0)
        rss = psutil.Process(proc.pid).memory_info().rss / MB
    finally:
        proc.kill()
        proc.wait()
    return rss, start_seconds


def serving(role: str) -> psutil.Process:
    """This benchmark's descendant process running ``cynode <role> serve`` (not its lifeline watcher: the larger)."""
    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            cmdline, rss = proc.cmdline(), proc.memory_info().rss
        except psutil.Error:
            continue
        if "cynode_core" in cmdline and role in cmdline and "serve" in cmdline:
            found.append((rss, proc))
    if not found:
        raise RuntimeError(f"no `{role} serve` process found")
    return max(found, key=lambda item: item[0])[1]


def model_pages_mb(proc: psutil.Process) -> float:
    """Resident pages of the GGUF files ``proc`` maps."""
    return sum(m.rss for m in proc.memory_maps() if m.path.endswith(".gguf")) / MB


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--idle", type=float, default=15.0)
    args = parser.parse_args()
    floor_rss, floor_start = bare_python()
    home = Path(tempfile.mkdtemp(prefix="cynode-bench-footprint-"))
    started = time.perf_counter()
    with stack(home=home) as (_s, _client):
        first = time.perf_counter() - started
        time.sleep(args.idle)
        orchestrator = serving("orchestrator").memory_info().rss / MB
        node = serving("node")
        node_rss, model = node.memory_info().rss / MB, model_pages_mb(node)
    started = time.perf_counter()
    with stack(home=home):  # again on the same home: its database and model are there
        ready = time.perf_counter() - started
    print(f"footprint: node agent {node_rss:.0f} MB resident, of which {model:.0f} MB model pages")
    report("footprint orchestrator RSS", orchestrator, floor_rss, "MB", "<= 150 MB")
    report("footprint node agent RSS beyond its model", node_rss - model, floor_rss, "MB", "<= 100 MB")
    report("footprint cynode up ready, first start of a home", first, floor_start, "s", "as short as it gets")
    report("footprint cynode up ready, next starts", ready, floor_start, "s", "< 5 s")


if __name__ == "__main__":
    main()
