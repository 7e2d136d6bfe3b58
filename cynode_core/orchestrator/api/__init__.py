"""flask-smorest blueprints, one per resource, and their registration."""

from __future__ import annotations

import flask_smorest

from cynode_core.orchestrator.api.http import JsonBodyParser
from cynode_core.orchestrator.api.schemas_common import ProblemSchema

BEARER: list[dict[str, list[str]]] = [{"bearerAuth": []}]


class Blueprint(flask_smorest.Blueprint):
    """Our blueprints parse bodies as JSON only (415 otherwise) and document errors as problem details."""

    ARGUMENTS_PARSER = JsonBodyParser()

    def arguments(self, schema, *, error_status_code: int = 400, **kwargs):  # type: ignore[no-untyped-def, override]
        # Argument errors are answered 400 "Invalid request body" (contract), so document 400, not 422.
        return super().arguments(schema, error_status_code=error_status_code, **kwargs)

    def alt_response(self, status_code, response=None, **kwargs):  # type: ignore[no-untyped-def, override]
        if response is None and "schema" not in kwargs and int(status_code) >= 400:
            kwargs.update(schema=ProblemSchema, content_type="application/problem+json")
        return super().alt_response(status_code, response, **kwargs)


def register_api(api: flask_smorest.Api) -> None:
    from cynode_core.orchestrator.api import auth, health, metrics, nodes, tasks, users

    api.spec.components.security_scheme("bearerAuth", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"})
    for module in (health, metrics, auth, users, tasks, nodes):
        api.register_blueprint(module.blp)
    _problem_content_type(api)


def _problem_content_type(api: flask_smorest.Api) -> None:
    """Document every error response as ``application/problem+json``, as it is sent."""
    for response in api.spec.to_dict().get("components", {}).get("responses", {}).values():
        content = response.get("content")
        if content and "application/json" in content:
            content["application/problem+json"] = content.pop("application/json")
