"""The published API description: valid OpenAPI 3, complete, browsable, and true.

The last test lets schemathesis generate requests (valid and invalid) for
every documented operation against the live orchestrator on loopback, on a
real PostgreSQL, and checks that nothing answers 5xx and that every response
matches what ``/openapi.json`` says it is.
"""

from __future__ import annotations

import re
from typing import Any

import jsonschema_rs
import pytest
import schemathesis
from harness.api import ApiClient
from harness.chat import OPENAI_PATHS, no_model_here
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import response_schema_conformance
from schemathesis.specs.openapi.definitions import OPENAPI_30

from cynode_core.orchestrator.services import accounts

# Routes the API documentation itself serves (and Flask's static route); they are not operations.
_DOC_PATHS = ("/openapi.json", "/docs", "/static/")
_VERBS = ("get", "put", "post", "delete", "patch", "head", "options")
_FUZZ_USER, _FUZZ_PASSWORD = "fuzz-user", "fuzz-password-0123"
MAX_EXAMPLES = 25
PROBLEM = "application/problem+json"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    # Hundreds of generated logins from one address: the throttles would
    # turn every later request into a (documented) 429 and hide the rest.
    return {"login_rate_per_minute": 1_000_000, "login_handle_failures": 1_000_000, "mcp_calls_per_minute": 1_000_000}


def _operations(spec: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(path, verb): op for path, item in spec["paths"].items() for verb, op in item.items() if verb in _VERBS}


def _resolve(spec: dict[str, Any], obj: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in obj:
        _, section, name = obj["$ref"].lstrip("#/").split("/")
        obj = spec["components"][section][name]
    return obj


def test_openapi_json_is_valid_openapi_3(api) -> None:  # type: ignore[no-untyped-def]
    resp = api.get("/openapi.json")
    assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("application/json")
    spec = resp.json()
    assert spec["openapi"].startswith("3.0.")
    errors = [
        f"{'/'.join(map(str, e.instance_path))}: {e.message}"
        for e in jsonschema_rs.Draft4Validator(OPENAPI_30).iter_errors(spec)
    ]
    assert errors == []
    bearer = {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    assert spec["components"]["securitySchemes"]["bearerAuth"] == bearer


def test_openapi_lists_every_route_and_only_real_ones(api, orchestrator) -> None:  # type: ignore[no-untyped-def]
    documented = set(_operations(api.get("/openapi.json").json()))
    served = set()
    for rule in orchestrator.app.url_map.iter_rules():
        if rule.rule.startswith(_DOC_PATHS):
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        served |= {(path, m.lower()) for m in rule.methods or () if m not in ("HEAD", "OPTIONS")}
    assert served - documented == set(), "served but not documented"
    assert documented - served == set(), "documented but not served"
    assert {
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/v1/auth/login", "post"),
        ("/v1/nodes/register", "post"),
    } <= served


def test_every_operation_has_a_summary_and_declares_its_token(api) -> None:  # type: ignore[no-untyped-def]
    spec = api.get("/openapi.json").json()
    for (path, verb), op in _operations(spec).items():
        assert op.get("summary"), f"{verb.upper()} {path} has no summary"
        # A 401 means a token is checked, except where credentials come in the body.
        if "401" in op["responses"] and path not in ("/v1/auth/login", "/v1/auth/refresh", "/v1/nodes/register"):
            assert op.get("security") == [{"bearerAuth": []}], f"{verb.upper()} {path} takes a token but says none"


def test_shared_error_responses_document_problem_details(api) -> None:  # type: ignore[no-untyped-def]
    spec = api.get("/openapi.json").json()
    for name in ("DEFAULT_ERROR",):
        response = spec["components"]["responses"][name]
        schema = _resolve(spec, response["content"][PROBLEM]["schema"])
        assert {"type", "title", "status", "detail"} <= set(schema["properties"])
        assert schema["properties"]["status"]["type"] == "integer"


def test_every_error_response_documents_its_problem_body(api) -> None:  # type: ignore[no-untyped-def]
    spec = api.get("/openapi.json").json()
    missing = []
    for (path, verb), op in _operations(spec).items():
        for status, response in op["responses"].items():
            response = _resolve(spec, response)
            if not status.startswith(("4", "5")) or path == "/readyz":
                continue
            # The OpenAI routes document their OpenAI error object instead (docs/wire_contract.md#chat-errors).
            expected = ["application/json"] if path in OPENAI_PATHS else [PROBLEM]
            if list(response.get("content", {})) != expected:
                missing.append(f"{verb.upper()} {path} {status}")
    assert missing == []


def test_docs_serves_swagger_ui(api) -> None:  # type: ignore[no-untyped-def]
    resp = api.get("/docs")
    assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("text/html")
    html = resp.text
    assert "SwaggerUIBundle" in html and 'url: "/openapi.json"' in html


def test_docs_assets_are_served(api) -> None:  # type: ignore[no-untyped-def]
    html = api.get("/docs").text
    assets = re.findall(r'(?:src|href)="(/[^"]+\.(?:js|css))"', html)
    assert assets
    for asset in assets:
        assert api.get(asset).status_code == 200, asset


# -- schemathesis against the live app ---------------------------------------


class Credentials:
    """User, admin, node and agent tokens for the protected operations; a fresh login for each logout."""

    def __init__(self, base: str, orchestrator: Any):
        with orchestrator.db.session() as session:
            accounts.create_user(session, _FUZZ_USER, _FUZZ_PASSWORD)
        self.api = ApiClient(base)
        self.user_token = self.fresh_token()
        self.admin_token = self.fresh_token("admin", orchestrator.secrets.admin_password)
        cap = {"version": 1, "node": {"node_slug": "fuzz-node"}, "worker_api": {"base_url": "http://127.0.0.1:9"}}
        resp = self.api.post("/v1/nodes/register", json={"psk": orchestrator.secrets.psk, "capability": cap})
        assert resp.status_code == 201, resp.text
        self.node_token = resp.json()["auth"]["node_jwt"]
        fuzz_user = self.api.get("/v1/users/me", token=self.user_token).json()["id"]
        minted = self.api.post(
            "/v1/admin/agent-tokens", token=self.admin_token, json={"role": "pm", "user_id": fuzz_user}
        )
        assert minted.status_code == 201, minted.text
        self.agent_token = minted.json()["token"]

    def fresh_token(self, handle: str = _FUZZ_USER, password: str = _FUZZ_PASSWORD) -> str:
        """The access token of a new session."""
        return str(self.api.login(handle, password, expect=200).json()["access_token"])

    def headers_for(self, case: schemathesis.Case) -> dict[str, str]:
        if not case.operation.definition.raw.get("security"):
            return {}
        path = case.operation.path
        if path == "/v1/auth/logout":
            token = self.fresh_token()  # logout ends the session it is called with
        elif path.startswith("/v1/nodes/"):
            token = self.node_token
        elif path.endswith("/revoke_sessions") or path.startswith("/v1/admin/"):
            token = self.admin_token  # admin only; the generated ids never name a real user
        elif path.startswith("/v1/mcp/") or path == "/mcp":
            token = self.agent_token
        else:
            token = self.user_token
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def credentials(live_orchestrator: str, orchestrator) -> Credentials:  # type: ignore[no-untyped-def]
    return Credentials(live_orchestrator, orchestrator)


@schemathesis.check
def not_a_server_error_but_not_ready(ctx: Any, response: Any, case: schemathesis.Case) -> bool | None:
    """``not_a_server_error``, except the documented 503s where no node is here (``/readyz``, a chat turn)."""
    if case.operation.path == "/readyz" and response.status_code == 503:
        return None
    if no_model_here(case.operation.path, response):
        return None
    return not_a_server_error(ctx, response, case)


def _fuzz(operation: Any, mode: GenerationMode, credentials: Credentials) -> None:
    """Up to ``MAX_EXAMPLES`` generated requests for one operation, checked as they come."""

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],
    )
    @given(case=operation.as_strategy(mode))
    def run(case: schemathesis.Case) -> None:
        case.call_and_validate(
            headers=credentials.headers_for(case),
            checks=[not_a_server_error_but_not_ready, response_schema_conformance],
            timeout=30,
        )

    try:
        run()
    except Unsatisfiable:
        # Nothing to make invalid (no parameters, no body): no negative case exists.
        assert mode is GenerationMode.NEGATIVE, operation.label


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_api_keeps_its_description(
    live_orchestrator: str, credentials: Credentials, mode: GenerationMode, subtests
) -> None:  # type: ignore[no-untyped-def]
    # Built by hand per operation: schemathesis' own pytest integration
    # (schemathesis.pytest.from_fixture) does not run on pytest 9.
    spec = ApiClient(live_orchestrator).call("GET", "/openapi.json", auth=False)
    schema = schemathesis.openapi.from_dict(spec)
    schema.config.update(base_url=live_orchestrator)
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        operations.append(result.ok())
    assert len(operations) == len(_operations(spec))
    for operation in operations:
        with subtests.test(msg=operation.label):
            _fuzz(operation, mode, credentials)
