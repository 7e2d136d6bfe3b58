"""``cynode task logs --follow`` and ``cynode task watch`` against a real orchestrator on loopback.

The orchestrator app is served by waitress in this process; the test
writes the task's output rows through ``services.job_output.append`` (what
a node's live report will cause; no node runs here) and ends the task as
the dispatcher does. The commands run through click's CliRunner, and once
as a real ``cynode`` process to see lines arrive on its stdout pipe while
the task runs, and Ctrl-C stop the following but not the task.
"""

from __future__ import annotations

import os
import pty
import queue
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests
from click.testing import CliRunner
from harness.follow import append_output, finish
from harness.orchestrator import task_status
from harness.processes import clean_environ
from sqlalchemy import text

from cynode_core.cli import main


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"log_follow_heartbeat": 0.5, "log_followers": 3}


def later(*steps: Callable[[], None], gap: float = 0.3) -> threading.Thread:
    """Run ``steps`` one after the other in the background, ``gap`` seconds apart (the task going on)."""

    def run() -> None:
        for step in steps:
            time.sleep(gap)
            step()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_logs_follow_prints_each_stream_to_its_own_file_until_the_end(orchestrator: Any, logged_in: Any) -> None:
    env, api = logged_in
    task = api.create_command("echo out; echo err >&2")
    db = orchestrator.db
    writer = later(
        lambda: append_output(db, task, "stdout", "out-1\n"),
        lambda: append_output(db, task, "stderr", "err-1\n"),
        lambda: append_output(db, task, "stdout", "out-2\n"),
        lambda: finish(db, task),
    )
    result = CliRunner(env=env).invoke(main, ["task", "logs", task, "--follow"], catch_exceptions=False)
    writer.join(5)
    assert result.exit_code == 0, result.output
    assert result.stdout == "out-1\nout-2\n"
    assert result.stderr == "err-1\n"


def test_watch_shows_the_status_changes_and_fails_with_the_task(orchestrator: Any, logged_in: Any) -> None:
    env, api = logged_in
    task = api.create_command("echo out")
    db = orchestrator.db

    def start() -> None:
        with db.session() as session:
            session.execute(text("UPDATE tasks SET status = 'running' WHERE id = :id"), {"id": task})

    writer = later(start, lambda: append_output(db, task, "stdout", "working\n"), lambda: finish(db, task, "failed"))
    result = CliRunner(env=env).invoke(main, ["task", "watch", task], catch_exceptions=False)
    writer.join(5)
    assert result.exit_code == 1  # the task failed
    assert result.stdout == "working\n"
    assert result.stderr.splitlines() == [
        f"task {task}: queued",
        f"task {task}: running",
        f"task {task}: failed",
    ]


def test_a_cynode_process_prints_lines_as_they_come_and_ctrl_c_leaves_the_task_running(
    orchestrator: Any, live_orchestrator: str, logged_in: Any
) -> None:
    env, api = logged_in
    task = api.create_command("sleep 60")
    proc = subprocess.Popen(
        [sys.executable, "-m", "cynode_core", "task", "logs", task, "--follow"],
        env=clean_environ(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[tuple[float, str]] = queue.Queue()
    threading.Thread(
        target=lambda: [lines.put((time.monotonic(), line)) for line in iter(proc.stdout.readline, "")],  # type: ignore[union-attr]
        daemon=True,
    ).start()
    try:
        deadline = time.monotonic() + 30
        while "cynode_log_followers 1.0" not in requests.get(f"{live_orchestrator}/metrics", timeout=5).text:
            assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.1)
        for i in (1, 2):
            written = time.monotonic()
            append_output(orchestrator.db, task, "stdout", f"line-{i}\n")
            arrived, line = lines.get(timeout=5)
            assert line == f"line-{i}\n"
            assert arrived - written < 1.0, f"line-{i} printed {arrived - written:.2f} s after it was written"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130
    assert "stopped following" in err and "Traceback" not in err
    assert task_status(orchestrator.db, task) == "pending"  # following stopped, the task did not


def test_watch_on_a_terminal_redraws_one_status_line_and_leaves_the_final_status(
    orchestrator: Any, logged_in: Any
) -> None:
    env, api = logged_in
    task = api.create_command("echo out")
    primary, secondary = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cynode_core", "task", "watch", task],
        env=clean_environ(**env),
        stdout=subprocess.PIPE,
        stderr=secondary,
        text=True,
    )
    os.close(secondary)
    try:
        screen = b""
        while b"[queued]" not in screen:
            assert select.select([primary], [], [], 20)[0], f"no status line on the terminal: {screen!r}"
            screen += os.read(primary, 4096)
        append_output(orchestrator.db, task, "stdout", "working\n")
        finish(orchestrator.db, task)
        out, _ = proc.communicate(timeout=20)
        while select.select([primary], [], [], 0.5)[0]:
            try:
                screen += os.read(primary, 4096)
            except OSError:  # the child closed its side
                break
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(primary)
    assert proc.returncode == 0 and out == "working\n"
    text_on_screen = screen.decode()
    # The status line is cleared before the line goes to stdout and at the end, where the final status stays.
    assert "\r\x1b[K" in text_on_screen
    assert text_on_screen.rstrip().endswith(f"task {task}: completed")
