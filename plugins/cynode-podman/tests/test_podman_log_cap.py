"""A job that floods its output: a capped container log, capped stored output, and an end in bounded time.

Measured before the cap (issue 11): 50 MB of two-byte lines left a 1.17 GB
k8s-file log that took the runtime about 300 s to read, for a job that ran
3.4 s.
"""

from __future__ import annotations

import io
import os
import threading
import time

from cynode_podman.container_config import log_size_max
from cynode_podman.output import CappedBuffer, read_k8s_log
from cynode_podman.runtime import PodmanRuntime
from podman.errors import APIError

from cynode_core.testing import SpecFactory, sh

FLOOD_BYTES = 50_000_000
# The job itself runs about 4 s here (2 cores, other tests alongside); reading its log must add little.
FLOOD_DEADLINE = 30.0


class LogWatcher:
    """Samples the size of a job's container log file while it runs."""

    def __init__(self, runtime: PodmanRuntime, job_id: str) -> None:
        self._runtime, self._job_id = runtime, job_id
        self.largest = 0
        self.path: str | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> LogWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(5)

    def _watch(self) -> None:
        while not self._done.wait(0.02):
            try:
                if self.path is None:
                    found = self._runtime.client.containers.list(
                        all=True, filters={"label": f"cynodeai.job_id={self._job_id}"}
                    )
                    if found:  # a listing holds no HostConfig; the inspect data does
                        inspected = self._runtime.client.containers.get(found[0].id)
                        self.path = inspected.attrs["HostConfig"]["LogConfig"]["Path"]
                else:
                    self.largest = max(self.largest, os.stat(self.path).st_size)
            except (OSError, KeyError, APIError):
                pass  # not created yet, or already removed


def test_a_flood_of_short_lines_ends_in_bounded_time_with_a_bounded_log(
    podman_runtime: PodmanRuntime, sandbox_spec_factory: SpecFactory
) -> None:
    cap = 262144
    spec = sandbox_spec_factory(sh(f"yes | head -c {FLOOD_BYTES}; echo done >&2"), max_output_bytes=cap)
    began = time.monotonic()
    with LogWatcher(podman_runtime, spec.job_id) as watcher:
        outcome = podman_runtime.run(spec)
    elapsed = time.monotonic() - began
    assert outcome.status == "completed", outcome.stderr
    assert elapsed < FLOOD_DEADLINE, f"a {FLOOD_BYTES}-byte flood took {elapsed:.1f} s end to end"
    # The job's first output is kept, up to the cap, and flagged as cut.
    assert outcome.stdout == b"y\n" * (cap // 2) and outcome.stdout_truncated
    # The line on stderr came after the log's cap: it is lost, and its stream says so.
    assert outcome.stderr == b"" and outcome.stderr_truncated
    assert watcher.path is not None, "the container's log file was never seen"
    assert 0 < watcher.largest <= log_size_max(cap), watcher.largest


def test_output_under_the_log_cap_is_whole_and_in_order(
    podman_runtime: PodmanRuntime, sandbox_spec_factory: SpecFactory
) -> None:
    script = "echo one; printf 'no newline'; echo ' two' >&2; printf '\\n\\n'; echo three >&2; printf end"
    outcome = podman_runtime.run(sandbox_spec_factory(sh(script)))
    assert outcome.status == "completed", outcome.stderr
    assert (outcome.stdout, outcome.stderr) == (b"one\nno newline\n\nend", b" two\nthree\n")
    assert not outcome.stdout_truncated and not outcome.stderr_truncated


def test_the_log_cap_holds_both_streams_caps_as_one_byte_lines() -> None:
    assert log_size_max(262144) == 2 * 46 * 262144
    assert log_size_max(0) == 1024 * 1024 and log_size_max(10**9) == 256 * 1024 * 1024


def test_k8s_file_lines_are_demultiplexed_and_partial_lines_joined() -> None:
    ts = b"2026-12-07T00:25:37.245840756+00:00"
    log = io.BytesIO(
        ts + b" stdout P abc\n" + ts + b" stdout F def\n" + ts + b" stderr F \n" + ts + b" stdout F x y z\n"
    )
    stdout, stderr = CappedBuffer(100), CappedBuffer(100)
    read_k8s_log(log, stdout, stderr)  # type: ignore[arg-type]
    assert (bytes(stdout.data), bytes(stderr.data)) == (b"abcdef\nx y z\n", b"\n")
