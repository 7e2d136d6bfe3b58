"""Idle footprint: the orchestrator's and a node agent's resident memory, and how long ``cynode up`` takes to be ready.

Run: .venv/bin/python -m benchmarks.footprint [--idle 15]

A ``cynode up`` stack (embedded PostgreSQL, the orchestrator, one node with
the embedded model) in a temporary home, its images already built. The
figures: the time from the start to every ``/readyz`` answering 200, at the
home's first start (its database made) and at the next (goal < 5 s); after ``--idle`` seconds of nothing, the orchestrator process's RSS
(goal <= 150 MB; PostgreSQL is its own processes, not counted) and the node
agent's RSS beyond the model it holds (goal <= 100 MB beyond the model).
The floor, measured in the same run, is a bare Python interpreter: its RSS
once started, and its start time.

What a model costs to hold is measured in the same run too: a bare
interpreter that loads the node's model file with the node's own loader and
settings (``cynode_llamacpp.model_loader.load_model``, default context) and
does nothing else. Beyond the file's pages it holds what llama.cpp keeps for
any model (the vocabulary, the KV cache, the compute buffers touched by one
evaluation). The node's figure beyond the model is its RSS less that
process's RSS less the bare interpreter's; the figure beyond the file pages
alone is printed too (docs/decisions.md, "Node footprint: the model it
holds").
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


def model_pages(proc: psutil.Process) -> tuple[float, Path]:
    """Resident MB of the GGUF file ``proc`` maps, and its path."""
    maps = [m for m in proc.memory_maps() if m.path.endswith(".gguf")]
    if not maps:
        raise RuntimeError("the node maps no model file")
    return sum(m.rss for m in maps) / MB, Path(maps[0].path)


def bare_model(path: Path, idle: float) -> float:
    """RSS in MB of a bare interpreter holding ``path`` as the node loads it, after ``idle`` seconds."""
    code = (
        "import sys, time; from pathlib import Path; "
        "from cynode_llamacpp.model_loader import load_model; from cynode_llamacpp.settings import DEFAULT_NUM_CTX; "
        "held = load_model(Path(sys.argv[1]), n_ctx=DEFAULT_NUM_CTX, n_threads=None); "
        "print('loaded', flush=True); time.sleep(600)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "loaded":
            raise RuntimeError(f"the bare interpreter could not load {path}")
        time.sleep(idle)
        return psutil.Process(proc.pid).memory_info().rss / MB
    finally:
        proc.kill()
        proc.wait()


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
        node_rss = node.memory_info().rss / MB
        model, model_path = model_pages(node)
    started = time.perf_counter()
    with stack(home=home):  # again on the same home: its database and model are there
        ready = time.perf_counter() - started
    held = bare_model(model_path, args.idle) - floor_rss
    print(
        f"footprint: node agent {node_rss:.0f} MB resident, of which {model:.0f} MB model file pages; "
        f"holding the model alone costs a bare interpreter {held:.0f} MB"
    )
    report("footprint orchestrator RSS", orchestrator, floor_rss, "MB", "<= 150 MB")
    report("footprint node agent RSS beyond the model it holds", node_rss - held, floor_rss, "MB", "<= 100 MB")
    report("footprint node agent RSS beyond the model file pages", node_rss - model, floor_rss, "MB", "for the record")
    report("footprint cynode up ready, first start of a home", first, floor_start, "s", "as short as it gets")
    report("footprint cynode up ready, next starts", ready, floor_start, "s", "< 5 s")


if __name__ == "__main__":
    main()
