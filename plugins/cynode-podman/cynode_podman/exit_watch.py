"""Knowing at once that a job ended: a pidfd on the container's process, then the exit code Podman recorded.

Podman's wait endpoint answers some 45 ms after a short job's process
exited (measured on Podman 4.3: conmon has written the exit file within
4 ms, the wait returns after the container's cleanup). For a job of a few
milliseconds that is most of its run. The process is watched instead with
a pidfd (Linux 5.3+, the container's process seen from the host), and once
it is gone the exit code is read from Podman's inspect, which takes conmon's
exit file into account. Where a pidfd cannot be had, or Podman does not
know the code in time, ``wait_for_exit`` keeps to Podman's wait.
"""

from __future__ import annotations

import os
import select
import time
from typing import Any

import requests
from podman.domain.containers import Container
from podman.errors import APIError

from cynode_podman.calls import kill

# How long Podman may take to know the exit code once the process is gone (conmon writes it).
SETTLE_SECONDS = 1.0


def inspect_started(container: Container) -> None:
    """Refresh ``container.attrs`` after its start (its process id); a job already over leaves them as they were."""
    try:
        container.reload()
    except APIError:  # e.g. "read /proc/<pid>/cgroup: no such process": it ended; Podman's wait will say how
        pass


def process_ended(container: Container, timeout: float | None) -> bool | None:
    """True once the container's process ended, False when ``timeout`` passed first; None if it cannot be watched.

    ``container.attrs`` must be an inspect of the running container (its ``State.Pid``).
    """
    pid = int((container.attrs.get("State") or {}).get("Pid") or 0)
    if pid <= 0 or not hasattr(os, "pidfd_open"):
        return None
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True  # already over
    except OSError:
        return None
    try:
        readable, _, _ = select.select([fd], [], [], timeout)
    finally:
        os.close(fd)
    return bool(readable)


def recorded_exit_code(container: Container) -> int | None:
    """The exit code Podman has for the container, asked until it knows; None if not within ``SETTLE_SECONDS``."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        try:
            container.reload()
        except APIError:  # the same race as at its start: ask again
            state: dict[str, Any] = {}
        else:
            state = container.attrs.get("State") or {}
        if state.get("Status") in ("exited", "stopped"):
            return int(state.get("ExitCode", -1))
        if time.monotonic() > deadline:
            return None
        time.sleep(0.002)


def wait_for_exit(container: Container, timeout_seconds: int, interval: str) -> tuple[int, bool]:
    """Wait for the exit code; on timeout kill the container. Returns ``(code, timed_out)``.

    ``interval`` is how often Podman's wait polls (e.g. ``10ms``) when it has to be asked.
    """
    timeout = float(timeout_seconds) if timeout_seconds > 0 else None
    begin = time.monotonic()
    ended = process_ended(container, timeout)  # at once, not after Podman's cleanup
    if ended is False:
        kill(container)
        return -1, True
    code = recorded_exit_code(container) if ended else None
    if code is not None:
        return code, False
    if timeout is not None:
        timeout = max(timeout - (time.monotonic() - begin), 0.001)
    try:
        return int(container.wait(interval=interval, timeout=timeout)), False
    except APIError as exc:
        elapsed = time.monotonic() - begin
        if timeout is None or not (isinstance(exc.__cause__, requests.Timeout) or elapsed >= timeout):
            raise
    kill(container)
    return -1, True
