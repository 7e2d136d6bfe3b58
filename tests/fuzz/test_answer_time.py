"""Answers to hostile bodies take time linear in their size: 4x the input, well under 16x the time.

For each kind of hostile value (nesting, a long array, a long string, many
keys, many surrogate escapes, many small containers) and a field of each
surface (a login handle, a task's attachments, a free-form capability
field, a job's command), the answer time for a body of size n and of 4n
is measured on loopback (the best of three, interleaved, so load from
elsewhere touches both sizes alike; garbage collection paused, see
``_collector_paused``). Linear work gives a ratio of 4, a quadratic step
16; the bound is 8, over a floor that keeps fixed costs from deciding.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable, Iterator

import pytest
from harness.worker import WorkerNode

from fuzz.clients import Tokens
from fuzz.endpoints import ORCHESTRATOR_ENDPOINTS, RUN_JOB, with_fresh_ids
from fuzz.hostile import (
    Endpoint,
    assert_client_error_or_success,
    huge_array,
    incompressible_text,
    many_keys,
    nested_arrays,
    post_timed,
)

MAX_RATIO = 8.0
FLOOR_SECONDS = 0.05
TRIES = 3

# kind -> (the value of size n, n). Both sizes of a kind stay on the same side of the
# decoder's limits (cynode_core.http_limits: 100 000 values, 64 levels, 10 MiB), so
# each pair times one path: parsed and validated, or refused after parsing.
KINDS: dict[str, tuple[Callable[[int], bytes], int]] = {
    "nesting": (nested_arrays, 250_000),
    "array": (huge_array, 24_000),
    "array_over_the_limit": (huge_array, 1_000_000),
    "string": (lambda n: incompressible_text(n, seed=n), 1024 * 1024),
    "keys": (many_keys, 24_000),
    "surrogate_escapes": (lambda n: huge_array(n, b'"\\ud800"'), 24_000),
    "small_containers": (lambda n: huge_array(n, b"[[{}]]"), 8_000),
}
_BY_NAME = {e.name: e for e in ORCHESTRATOR_ENDPOINTS}
TARGETS = [
    ("login", ("handle",)),
    ("create_task", ("attachments",)),
    ("capability", ("platform",)),  # a free-form object of the report: stored as sent when it is one
]


def _growth(send: Callable[[bytes], float], make: Callable[[int], bytes], n: int) -> tuple[float, float]:
    """Best answer times for size n and 4n."""
    small, large = make(n), make(4 * n)
    times: dict[int, list[float]] = {n: [], 4 * n: []}
    for _ in range(TRIES):
        for size, body in ((n, small), (4 * n, large)):
            with _collector_paused():
                times[size].append(send(body))
    return min(times[n]), min(times[4 * n])


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """No garbage collection during one timed answer (the servers run in this process).

    CPython starts a full collection each time the objects that survived
    grow by a quarter: a body of a hundred thousand small containers, next
    to this process's own million objects, gets one or two collections at n
    and five or six at 4n. Asymptotically that is linear (the steps are
    geometric), but at these sizes it would decide the ratio; the work of
    the code under test is what is timed here.
    """
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _assert_linear(results: dict[str, tuple[float, float]]) -> None:
    table = "\n".join(f"{name:40} {t1 * 1000:8.1f} ms -> {t4 * 1000:8.1f} ms" for name, (t1, t4) in results.items())
    slow = [name for name, (t1, t4) in results.items() if t4 > MAX_RATIO * max(t1, FLOOR_SECONDS)]
    assert not slow, f"grew faster than {MAX_RATIO}x for 4x the input: {slow}\n{table}"


def _assert_answer_time_linear(
    endpoint: Endpoint,
    url: str,
    headers: dict[str, str],
    field: tuple[str, ...],
    prepare: Callable[[bytes], bytes] = lambda body: body,
) -> None:
    """Time each kind of hostile value in ``field`` of ``endpoint`` (nesting: as the whole body) at n and 4n."""

    def sender(path: tuple[str, ...]) -> Callable[[bytes], float]:
        def send(fragment: bytes) -> float:
            body = prepare(endpoint.body_with(path, fragment))
            resp, elapsed = post_timed(url, body, headers)
            assert_client_error_or_success(resp, elapsed, f"{endpoint.name} {len(body)} bytes", openai=endpoint.openai)
            return elapsed

        return send

    results = {
        f"{endpoint.name} {kind}": _growth(sender(() if kind == "nesting" else field), make, n)
        for kind, (make, n) in KINDS.items()
    }
    _assert_linear(results)


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t[0])
def test_orchestrator_answer_time_grows_linearly(
    target: tuple[str, tuple[str, ...]], live_orchestrator: str, tokens: Tokens
) -> None:
    endpoint = _BY_NAME[target[0]]
    _assert_answer_time_linear(endpoint, live_orchestrator + endpoint.path, tokens.header(endpoint.token), target[1])


def test_worker_api_answer_time_grows_linearly(worker: WorkerNode, worker_token: str) -> None:
    def prepare(body: bytes) -> bytes:
        worker.calls.clear()  # the harness keeps every request it saw; megabytes of them slow the GC down
        return with_fresh_ids(body)

    auth = {"Authorization": f"Bearer {worker_token}"}
    _assert_answer_time_linear(RUN_JOB, worker.url + RUN_JOB.path, auth, ("sandbox", "command"), prepare)
