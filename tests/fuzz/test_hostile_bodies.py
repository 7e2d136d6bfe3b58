"""Every JSON field of every body-taking endpoint, fed hostile values over real HTTP: never a 5xx.

The gateway and the control plane (one orchestrator app, on loopback over a
real PostgreSQL) and a node's Worker API (its real app and server over a
scripted sandbox). For each endpoint, Hypothesis picks a field of a valid
body (or the whole body) and a hostile value for it: lone surrogates, NUL,
nesting to 100 000 levels, incompressible strings up to 5 MiB, wrong types,
arrays of a million items, 5000-digit numbers, NaN. The explicit examples
are the inputs that answered 500 before ``cynode_core.http_limits``.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

import pytest
import requests
from harness.worker import WorkerNode
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from fuzz.clients import Tokens
from fuzz.endpoints import FUZZ_USER_ID, ORCHESTRATOR_ENDPOINTS, RUN_JOB, with_fresh_ids
from fuzz.hostile import (
    Endpoint,
    MiB,
    assert_client_error_or_success,
    hostile_documents,
    hostile_fragments,
    huge_array,
    incompressible_text,
    nested_arrays,
    nested_objects,
    post_timed,
)

EXAMPLES = 50
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
# A body that failed before: nesting past Python's recursion limit (500 on every endpoint).
TOO_DEEP = nested_arrays(10_000)
# Field values that failed before: a lone surrogate (500 where it reached PostgreSQL or a
# password hash), an integer past CPython's 4300-digit conversion limit (500 everywhere).
LONE_SURROGATE = b'"\\ud800"'
HUGE_INTEGER = b"9" * 5000
# The largest of each kind, so every endpoint gets them whatever Hypothesis draws.
HUGE_STRING = incompressible_text(5 * MiB, seed=1)
HUGE_ARRAY = huge_array(1_000_000)


def _cases(endpoint: Endpoint) -> Any:
    """(field path or () for the whole body, raw JSON) pairs."""
    in_a_field = st.tuples(st.sampled_from(endpoint.fields), hostile_fragments())
    whole = st.tuples(st.just(()), hostile_documents())
    return st.one_of(in_a_field, whole)


def _fuzz(endpoint: Endpoint, send: Any) -> None:
    """Run the generated and the explicit cases of ``endpoint`` through ``send(body) -> (response, seconds)``."""
    first = endpoint.fields[0]

    @FUZZ_SETTINGS
    @given(case=_cases(endpoint))
    @example(case=((), TOO_DEEP))
    @example(case=(first, LONE_SURROGATE))
    @example(case=(first, HUGE_INTEGER))
    @example(case=(first, HUGE_STRING))
    @example(case=(first, HUGE_ARRAY))
    @example(case=((), nested_objects(100_000)))
    def run(case: tuple[tuple[str, ...], bytes]) -> None:
        path, fragment = case
        resp, elapsed = send(endpoint.body_with(path, fragment))
        what = f"{endpoint.name} {'.'.join(path) or '<body>'}={fragment[:80]!r}"
        assert_client_error_or_success(resp, elapsed, what, openai=endpoint.openai)

    run()


@pytest.mark.parametrize("endpoint", ORCHESTRATOR_ENDPOINTS, ids=lambda e: e.name)
def test_orchestrator_endpoint_answers_hostile_json_with_a_problem(
    endpoint: Endpoint, live_orchestrator: str, tokens: Tokens
) -> None:
    url = live_orchestrator + endpoint.path

    def send(body: bytes) -> tuple[requests.Response, float]:
        if FUZZ_USER_ID.encode() in body:
            body = body.replace(FUZZ_USER_ID.encode(), tokens.user_id().encode())
        resp, elapsed = post_timed(url, body.replace(b"<psk>", tokens.psk.encode()), tokens.header(endpoint.token))
        if endpoint.name == "logout" and resp.status_code == 204:
            tokens.ended()
        return resp, elapsed

    _fuzz(endpoint, send)


def test_worker_api_run_answers_hostile_json_with_a_problem(worker: WorkerNode, worker_token: str) -> None:
    url = worker.url + RUN_JOB.path
    auth = {"Authorization": f"Bearer {worker_token}"}

    def send(body: bytes) -> tuple[requests.Response, float]:
        worker.calls.clear()  # the harness keeps every request it saw: not megabytes of fuzz
        return post_timed(url, with_fresh_ids(body), auth)

    _fuzz(RUN_JOB, send)


@FUZZ_SETTINGS
@given(job_id=st.one_of(st.text(min_size=1), st.binary(min_size=1, max_size=64), st.just("a" * 100_000)))
@example(job_id="\ud800")
@example(job_id=b"\xed\xa0\x80")
@example(job_id="\x00")
def test_worker_api_cancel_answers_any_job_id(worker: WorkerNode, worker_token: str, job_id: Any) -> None:
    raw = job_id if isinstance(job_id, bytes) else job_id.encode("utf-8", "surrogatepass")
    url = f"{worker.url}/v1/worker/jobs/{urllib.parse.quote(raw, safe='')}:cancel"
    resp, elapsed = post_timed(url, b"", {"Authorization": f"Bearer {worker_token}"})
    assert_client_error_or_success(resp, elapsed, f"cancel {raw[:80]!r}")
