"""flask-smorest blueprints, one per resource, and their registration.

The docstrings of the view methods and the ``description`` texts of the
blueprints, responses and schema fields end up in ``/openapi.json``, which
Swagger UI (``/docs``) renders as Markdown: write them in Markdown (`code`,
not reST double backticks or roles).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

import flask_smorest

from cynode_core.orchestrator.api.http import JsonBodyParser
from cynode_core.orchestrator.api.schemas_common import ProblemSchema
from cynode_core.orchestrator.api.tokens import require_node, require_user

BEARER: list[dict[str, list[str]]] = [{"bearerAuth": []}]

View = Callable[..., Any]
# Who may call a route: its guard and the text of its documented 401.
GUARDS: dict[str, tuple[Callable[[View], View], str]] = {
    "user": (require_user, "Missing or invalid access token or API key"),
    "node": (require_node, "Missing or invalid node token"),
}


class Blueprint(flask_smorest.Blueprint):
    """Our blueprints parse bodies as JSON only (415 otherwise) and document errors as problem details."""

    ARGUMENTS_PARSER = JsonBodyParser()

    def arguments(self, schema, *, error_status_code: int = 400, **kwargs):  # type: ignore[no-untyped-def, override]
        # Argument errors are answered 400 "Invalid request body" (docs/wire_contract.md#errors):
        # document 400, not 422.
        return super().arguments(schema, error_status_code=error_status_code, **kwargs)

    def alt_response(self, status_code, response=None, **kwargs):  # type: ignore[no-untyped-def, override]
        if response is None and "schema" not in kwargs and int(status_code) >= 400:
            kwargs.update(schema=ProblemSchema, content_type="application/problem+json")
        return super().alt_response(status_code, response, **kwargs)

    def operation(
        self,
        status: int,
        schema: Any = None,
        *,
        errors: Mapping[int, str] | None = None,
        bearer: Literal["user", "node"] | None = None,
    ) -> Callable[[View], View]:
        """A view's success answer, its problem answers (status: text) and, with ``bearer``, its token guard.

        Put it above ``arguments``, so the token is checked before the body is
        read. The answers are documented in the order of their status codes.
        """
        problems = dict(errors or {})
        guard = None
        if bearer is not None:
            guard, problems[401] = GUARDS[bearer]

        def decorate(view: View) -> View:
            if guard is not None:
                view = guard(view)
            for code in sorted(problems, reverse=True):  # innermost first, as a stack listed by ascending code
                view = self.alt_response(code, description=problems[code])(view)
            view = self.response(status, schema)(view)
            return self.doc(security=BEARER)(view) if guard is not None else view

        return decorate


def register_api(api: flask_smorest.Api) -> None:
    from cynode_core.orchestrator.api import (
        agent_tokens,
        api_keys,
        artifacts,
        auth,
        chat,
        chat_threads,
        health,
        mcp,
        metrics,
        nodes,
        tasks,
        users,
    )

    api.spec.components.security_scheme("bearerAuth", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"})
    modules = (health, metrics, auth, api_keys, users, agent_tokens, tasks, artifacts, nodes, chat, chat_threads, mcp)
    for module in modules:
        api.register_blueprint(module.blp)
    _problem_content_type(api)


def _problem_content_type(api: flask_smorest.Api) -> None:
    """Document every error response as ``application/problem+json``, as it is sent."""
    for response in api.spec.to_dict().get("components", {}).get("responses", {}).values():
        content = response.get("content")
        if content and "application/json" in content:
            content["application/problem+json"] = content.pop("application/json")
