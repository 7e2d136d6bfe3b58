"""schemathesis over the whole OpenAPI document, stateful: chains of calls along links, as the admin.

The orchestrator's own ``/openapi.json`` (gateway and control plane) is
fetched from the live server on loopback and given links (below: added to
the test's copy only, so the published document and its wire golden stay
as they are): login -> refresh / logout / me / create API key / create
thread / chat / models, create API key -> list / revoke, create thread ->
get / messages / rename / list, me -> revoke_sessions,
create task -> get / result / logs / cancel, list -> first task / next
page, upload an artifact -> download / metadata / replace / grants / delete
/ list, register -> config / capability, config -> ack, create agent token ->
revoke it. The MCP routes are called with a pm agent token of the fuzz
user. schemathesis then runs scenarios of up to ``STEPS`` calls with valid and invalid data (NUL
included, lone surrogates through an unrestricted codec) and checks every
answer: no 5xx (``/readyz``'s documented 503 aside), the documented schema,
problem+json on every error, and an answer within the bound.
"""

from __future__ import annotations

import copy
import functools
from collections import Counter, defaultdict
from typing import Any

import schemathesis
from harness.api import ApiClient
from harness.chat import OPENAI_PATHS, no_model_here
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from fuzz.clients import FUZZ_PASSWORD, FUZZ_USER, Tokens
from fuzz.hostile import ANSWER_SECONDS, PROBLEM, SURROGATE_TEXT

SCENARIOS = 80
ARTIFACT_SCENARIOS = 80
STEPS = 8
MIN_OPERATIONS_REACHED = 10


def _ref(path: str, verb: str) -> str:
    return "#/paths/" + path.replace("~", "~0").replace("/", "~1") + "/" + verb


def _link(path: str, verb: str, **extra: Any) -> dict[str, Any]:
    return {"operationRef": _ref(path, verb), **extra}


TASK_REF = {"ref": "$response.body#/id"}
ARTIFACT_REF = {"artifact_id": "$response.body#/artifact_id"}
REFRESH_TOKEN = {"refresh_token": "$response.body#/refresh_token"}
LINKS: dict[tuple[str, str, str], dict[str, dict[str, Any]]] = {
    ("/v1/auth/login", "post", "200"): {
        "Refresh": _link("/v1/auth/refresh", "post", requestBody=REFRESH_TOKEN),
        "Logout": _link("/v1/auth/logout", "post", requestBody=REFRESH_TOKEN),
        "Me": _link("/v1/users/me", "get"),
        "CreateTask": _link("/v1/tasks", "post"),
        "CreateApiKey": _link("/v1/auth/api-keys", "post"),
        "CreateThread": _link("/v1/chat/threads", "post"),
        "Chat": _link("/v1/chat/completions", "post"),
        "Models": _link("/v1/models", "get"),
        "Upload": _link("/v1/artifacts", "post"),
    },
    ("/v1/artifacts", "post", "201"): {
        "Download": _link("/v1/artifacts/{artifact_id}", "get", parameters=ARTIFACT_REF),
        "Metadata": _link("/v1/artifacts/{artifact_id}/metadata", "get", parameters=ARTIFACT_REF),
        "Replace": _link("/v1/artifacts/{artifact_id}", "put", parameters=ARTIFACT_REF),
        "Grants": _link("/v1/artifacts/{artifact_id}/grants", "get", parameters=ARTIFACT_REF),
        "Delete": _link("/v1/artifacts/{artifact_id}", "delete", parameters=ARTIFACT_REF),
        "Grant": _link("/v1/artifacts/{artifact_id}/grants/{user_id}", "put", parameters=ARTIFACT_REF),
        "Ungrant": _link("/v1/artifacts/{artifact_id}/grants/{user_id}", "delete", parameters=ARTIFACT_REF),
        "ListArtifacts": _link("/v1/artifacts", "get", parameters={"scope_level": "$response.body#/scope_level"}),
    },
    ("/v1/chat/threads", "post", "201"): {
        "GetThread": _link("/v1/chat/threads/{thread_id}", "get", parameters={"thread_id": "$response.body#/id"}),
        "Messages": _link(
            "/v1/chat/threads/{thread_id}/messages", "get", parameters={"thread_id": "$response.body#/id"}
        ),
        "Rename": _link("/v1/chat/threads/{thread_id}", "patch", parameters={"thread_id": "$response.body#/id"}),
        "ListThreads": _link("/v1/chat/threads", "get"),
    },
    ("/v1/auth/api-keys", "post", "201"): {
        "ListApiKeys": _link("/v1/auth/api-keys", "get"),
        "RevokeApiKey": _link("/v1/auth/api-keys/{key_id}", "delete", parameters={"key_id": "$response.body#/id"}),
    },
    ("/v1/auth/refresh", "post", "200"): {
        "RefreshAgain": _link("/v1/auth/refresh", "post", requestBody=REFRESH_TOKEN),
        "Logout": _link("/v1/auth/logout", "post", requestBody=REFRESH_TOKEN),
    },
    ("/v1/admin/agent-tokens", "post", "201"): {
        "RevokeAgentToken": _link(
            "/v1/admin/agent-tokens/{token_id}", "delete", parameters={"token_id": "$response.body#/token_id"}
        ),
    },
    ("/v1/users/me", "get", "200"): {
        "Revoke": _link("/v1/users/{user_id}/revoke_sessions", "post", parameters={"user_id": "$response.body#/id"}),
    },
    ("/v1/tasks", "post", "201"): {
        "Get": _link("/v1/tasks/{ref}", "get", parameters=TASK_REF),
        "Result": _link("/v1/tasks/{ref}/result", "get", parameters=TASK_REF),
        "Logs": _link("/v1/tasks/{ref}/logs", "get", parameters=TASK_REF),
        "Cancel": _link("/v1/tasks/{ref}/cancel", "post", parameters=TASK_REF),
        "List": _link("/v1/tasks", "get"),
    },
    ("/v1/tasks", "get", "200"): {
        "First": _link("/v1/tasks/{ref}", "get", parameters={"ref": "$response.body#/tasks/0/id"}),
        "NextPage": _link("/v1/tasks", "get", parameters={"cursor": "$response.body#/next_cursor"}),
        "CreateTask": _link("/v1/tasks", "post"),
    },
    ("/v1/tasks/{ref}/cancel", "post", "200"): {
        "GetCanceled": _link("/v1/tasks/{ref}", "get", parameters={"ref": "$response.body#/task_id"}),
        "ResultCanceled": _link("/v1/tasks/{ref}/result", "get", parameters={"ref": "$response.body#/task_id"}),
    },
    ("/v1/nodes/register", "post", "201"): {
        "Config": _link("/v1/nodes/config", "get"),
        "Capability": _link("/v1/nodes/capability", "post"),
    },
    ("/v1/nodes/config", "get", "200"): {
        "Report": _link("/v1/nodes/capability", "post"),
        "Ack": _link(
            "/v1/nodes/config",
            "post",
            requestBody={
                "version": 1,
                "node_slug": "$response.body#/node_slug",
                "config_version": "$response.body#/config_version",
                "ack_at": "$response.body#/issued_at",
                "status": "applied",
            },
        ),
    },
}


def with_links(spec: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``spec`` with :data:`LINKS` on the responses they start from."""
    linked = copy.deepcopy(spec)
    for (path, verb, status), links in LINKS.items():
        response = linked["paths"][path][verb]["responses"][status]
        response.setdefault("links", {}).update(links)
    return linked


def answered_in_time(ctx: Any, response: Any, case: schemathesis.Case) -> bool | None:
    if response.elapsed >= ANSWER_SECONDS:
        raise AssertionError(f"{case.operation.label} answered in {response.elapsed:.1f} s")
    return None


def no_server_error(ctx: Any, response: Any, case: schemathesis.Case) -> bool | None:
    """``not_a_server_error``, except the documented 503s of a cluster without nodes.

    ``/readyz`` (no node is dispatchable here) and a chat turn's ``model_unavailable`` (no node serves a
    model here, so ``cynodeai.pm`` cannot answer).
    """
    if case.operation.path == "/readyz" and response.status_code == 503:
        return None
    if no_model_here(case.operation.path, response):
        return None
    return not_a_server_error(ctx, response, case)


def errors_are_problems(ctx: Any, response: Any, case: schemathesis.Case) -> bool | None:
    """Every error is problem+json naming its status; on the OpenAI endpoints an OpenAI error object."""
    if response.status_code >= 400 and case.operation.path in OPENAI_PATHS:
        error = response.json().get("error")
        if not isinstance(error, dict) or not error.get("code") or error.get("type") != "cynodeai_error":
            raise AssertionError(f"{case.operation.label} answered {response.status_code}: {response.text[:200]}")
        return None
    if response.status_code >= 400 and case.operation.path != "/readyz":
        content_type = response.headers.get("content-type", [""])[0]
        if not content_type.startswith(PROBLEM):
            raise AssertionError(f"{case.operation.label} answered {response.status_code} as {content_type!r}")
        status = response.json().get("status")
        if status != response.status_code:
            raise AssertionError(f"{case.operation.label}: problem status {status} on a {response.status_code}")
    return None


CHECKS = [no_server_error, response_schema_conformance, errors_are_problems, answered_in_time]

# Values that go through requests' JSON encoder (so no NaN, no 5000-digit integer, no
# 10 000 levels: tests/fuzz/test_hostile_bodies.py sends those as raw text).
LONE_SURROGATE_TEXT = SURROGATE_TEXT.map("".join)
HOSTILE_VALUES = st.one_of(
    LONE_SURROGATE_TEXT,
    LONE_SURROGATE_TEXT,  # twice: the one kind text fields everywhere meet
    st.text(max_size=8).map(lambda text: text + "\x00"),
    st.sampled_from([10**1000, -(2**63) - 1, 1e308, [[[[[[]]]]]] * 3]),
    st.integers(65, 200).map(lambda depth: functools.reduce(lambda inner, _: [inner], range(depth), [])),
    st.sampled_from([["x"] * 100_001, {f"k{i}": i for i in range(1000)}, "\U0010ffff" * 100_000]),
)


def hostile_member(body: Any, declared: list[str]) -> st.SearchStrategy[Any]:
    """``body`` as generated, or (twice as likely) with one member set to a hostile value.

    The member is one the operation declares (``declared``), one the body has, or a new one.
    """
    if not isinstance(body, dict):
        return st.just(body)
    # A declared member as often as any other: that is where a value is used, not dropped.
    keys = st.one_of(st.sampled_from(declared or ["unknown"]), st.sampled_from(sorted({*body, "unknown"})))
    injected = st.tuples(keys, HOSTILE_VALUES).map(lambda kv: {**body, kv[0]: kv[1]})
    return st.one_of(injected, injected, st.just(body))


def declared_members(spec: dict[str, Any]) -> dict[str, list[str]]:
    """Path -> the property names of its JSON request body (a ``$ref``'d object, or inline on the chat routes)."""
    members = {}
    for path, item in spec["paths"].items():
        for op in (item[verb] for verb in ("post", "put", "patch") if verb in item):
            schema = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
            ref = schema.get("$ref")
            if ref:
                schema = spec["components"]["schemas"][ref.rsplit("/", 1)[1]]
            if schema.get("properties"):
                members[path] = list(schema["properties"])
    return members


def _plain(*values: Any) -> bool:
    """Text that is not one of the hostile values: no NUL, no lone surrogate, not megabytes."""
    return all(
        isinstance(value, str) and len(value) < 1000 and "\x00" not in value and _encodable(value) for value in values
    )


def _sendable_name(name: str) -> str:
    """A multipart part name requests can write: a lone surrogate becomes U+FFFD (names are text)."""
    return name.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def _raw(value: Any) -> Any:
    """A multipart part's content as bytes, lone surrogates kept as the (invalid UTF-8) bytes they encode to."""
    return value.encode("utf-8", "surrogatepass") if isinstance(value, str) else value


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def run_chains(url: str, tokens: Tokens, scenarios: int, path_regex: str | None = None) -> dict[str, Counter[int]]:
    """Run schemathesis' chains over the API (or the operations under ``path_regex``); the answers' statuses."""
    spec = ApiClient(url).call("GET", "/openapi.json", auth=False)
    schema = schemathesis.openapi.from_dict(with_links(spec))
    if path_regex is not None:
        schema = schema.include(path_regex=path_regex)
    schema.config.update(base_url=url)
    # Any code point, lone surrogates and NUL included (the JSON encoder escapes them).
    schema.config.generation.update(codec=None, allow_x00=True, with_security_parameters=False)
    schema.config.phases.stateful.inference.algorithms = []  # the links above, no guessed ones
    members = declared_members(spec)
    schema.hook("flatmap_body")(lambda ctx, body: hostile_member(body, members.get(ctx.operation.path, [])))
    called: dict[str, Counter[int]] = defaultdict(Counter)
    uploads: list[schemathesis.Case] = []
    Machine: Any = schema.as_state_machine()  # noqa: N806 - a class
    assert set(LINKS) and Machine.root_rules, "no scenario can start"

    class AsAdmin(Machine):  # type: ignore[misc, valid-type]
        def before_call(self, case: schemathesis.Case) -> None:
            # A login or registration with plain text credentials gets the real ones, so chains go
            # on from it; one with a hostile value there keeps it.
            body = case.body if isinstance(case.body, dict) else {}
            if case.operation.path == "/v1/auth/login" and _plain(body.get("handle"), body.get("password")):
                case.body = {**body, "handle": FUZZ_USER, "password": FUZZ_PASSWORD}
            if case.operation.path == "/v1/nodes/register" and _plain(body.get("psk")):
                case.body = {**body, "psk": tokens.psk}
            if case.media_type == "multipart/form-data" and isinstance(case.body, dict):
                case.body = {_sendable_name(key): _raw(value) for key, value in case.body.items()}
            if case.operation.path == "/v1/artifacts" and case.method == "POST" and case.query:
                # A path of its own for each upload, so whether it is created depends on the
                # generated data only, not on what an earlier scenario stored (a 409).
                uploads.append(case)
                for name in ("path", "filename"):
                    if isinstance(case.query.get(name), str):  # a prefix of one width: lengths stay comparable
                        case.query[name] = f"{len(uploads):06d}/{case.query[name]}"

        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, Any]:
            path = case.operation.path
            if not case.operation.definition.raw.get("security"):
                kind = ""
            elif path.startswith("/v1/nodes/"):
                kind = "node"
            elif path.startswith("/v1/mcp/") or path == "/mcp":
                kind = "agent"  # the fuzz user's pm agent
            elif path in ("/v1/auth/logout", "/v1/users/me"):
                # The fuzz user's session: a logout ends it, and me names the user whose
                # sessions a linked revoke_sessions ends (the admin's own stay).
                kind = "user"
            else:
                kind = "admin"
            return {"headers": tokens.header(kind), "timeout": 60}

        def after_call(self, response: Any, case: schemathesis.Case) -> None:
            super().after_call(response, case)
            ending = case.operation.path == "/v1/auth/logout" or case.operation.path.endswith("/revoke_sessions")
            if ending and response.status_code == 204:
                tokens.ended()

        def validate_response(self, response: Any, case: schemathesis.Case, **kwargs: Any) -> None:
            called[case.operation.label][response.status_code] += 1
            case.validate_response(response, checks=CHECKS)

    AsAdmin.run(
        settings=settings(
            max_examples=scenarios,
            stateful_step_count=STEPS,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
    )

    return called


def test_api_chains_keep_every_answer_a_documented_non_5xx(live_orchestrator: str, tokens: Tokens) -> None:
    called = run_chains(live_orchestrator, tokens, SCENARIOS)
    # The chains went somewhere: most operations were reached, not only the entry points.
    assert len(called) >= MIN_OPERATIONS_REACHED, dict(called)


def test_artifact_chains_keep_every_answer_a_documented_non_5xx(live_orchestrator: str, tokens: Tokens) -> None:
    """The artifact routes on their own (binary and multipart bodies, ranges, grants), from an upload on."""
    called = run_chains(live_orchestrator, tokens, ARTIFACT_SCENARIOS, path_regex="^/v1/artifacts")
    print(sorted((k, dict(v)) for k, v in called.items()))
    uploaded = called["POST /v1/artifacts"][201]
    followed = [
        label for label, statuses in called.items() if "{artifact_id}" in label and any(s < 300 for s in statuses)
    ]
    assert uploaded and len(followed) >= 3, dict(called)
