"""``cynode_core.lifeline`` on real processes: a child ends with its parent, however the parent ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
from harness.processes import wait_until

from cynode_core import lifeline

# A parent that starts three watched children, one from a thread that has ended
# by then (the kernel's parent-death signal would already have killed that one),
# prints their pids and waits to be killed.
PARENT = """
import json, sys, threading
from cynode_core import lifeline

out = sys.argv[1]
started = {}
def from_a_thread():
    started["thread"] = lifeline.spawn(["sleep", "300"], grace=1).pid
worker = threading.Thread(target=from_a_thread)
worker.start()
worker.join()
started["stubborn"] = lifeline.spawn(["sh", "-c", "trap '' TERM; sleep 301 & wait"], grace=0.5).pid
started["cleanup"] = lifeline.spawn(cleanup=["sh", "-c", f"echo ran > {out}"]).pid
print(json.dumps(started), flush=True)
threading.Event().wait()
"""


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_children_end_when_their_parent_is_killed(tmp_path: Path) -> None:
    marker = tmp_path / "cleanup-ran"
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(marker)], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        watchers = [psutil.Process(pid) for pid in json.loads(parent.stdout.readline()).values()]

        def started() -> list[psutil.Process]:
            tree = watchers + [p for w in watchers for p in w.children(recursive=True)]
            commands = {" ".join(p.cmdline()) for p in tree}
            return tree if {"sleep 300", "sleep 301"} <= commands else []

        tree = wait_until(started, 10, "the watched commands")
        time.sleep(0.3)  # the child started from a thread outlives that thread
        assert all(_alive(p.pid) for p in tree) and not marker.exists()
        parent.kill()
        parent.wait(timeout=10)
        wait_until(lambda: not [p for p in tree if _alive(p.pid)], 10, "every watched process to end")
        assert marker.read_text() == "ran\n"
    finally:
        parent.kill()
        parent.communicate()
        for p in psutil.Process().children(recursive=True):
            p.kill()


def test_the_watcher_is_driven_like_its_command() -> None:
    assert lifeline.spawn(["sh", "-c", "exit 7"]).wait(timeout=10) == 7
    sleeper = lifeline.spawn(["sleep", "300"])
    command = wait_until(lambda: psutil.Process(sleeper.pid).children(), 10, "the command")[0]
    sleeper.terminate()
    assert sleeper.wait(timeout=10) == -signal.SIGTERM
    assert not _alive(command.pid)
    sleeper = lifeline.spawn(["sleep", "300"])
    command = wait_until(lambda: psutil.Process(sleeper.pid).children(), 10, "the command")[0]
    sleeper.kill()  # the watcher dies without a word; its command gets the parent-death signal
    assert sleeper.wait(timeout=10) == -signal.SIGKILL
    wait_until(lambda: not _alive(command.pid), 10, "the command to die with its watcher")
    assert lifeline.spawn(["/nonexistent/command"], stderr=subprocess.DEVNULL).wait(timeout=10) == 127


def test_children_lists_a_process_s_children() -> None:
    child = subprocess.Popen(["sleep", "30"])
    try:
        # Right after the fork the child's command line is empty until it has exec'd.
        wait_until(lambda: (child.pid, ["sleep", "30"]) in lifeline.children(os.getpid()), 10, "sleep in the list")
        assert all(ppid_of(pid) == os.getpid() for pid, _ in lifeline.children(os.getpid()))
    finally:
        child.kill()
        child.wait()


def ppid_of(pid: int) -> int | None:
    try:
        return psutil.Process(pid).ppid()
    except psutil.NoSuchProcess:
        return os.getpid()  # ended meanwhile: it was a child
