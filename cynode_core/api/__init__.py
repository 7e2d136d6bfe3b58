"""flask-smorest blueprints, one per resource, and their registration."""

from __future__ import annotations

import flask_smorest

from cynode_core.api.http import JsonBodyParser
from cynode_core.api.schemas_common import ProblemSchema

BEARER = [{"bearerAuth": []}]


class Blueprint(flask_smorest.Blueprint):
    """Our blueprints parse bodies as JSON only (415 otherwise)."""

    ARGUMENTS_PARSER = JsonBodyParser()


def register_api(api: flask_smorest.Api) -> None:
    from cynode_core.api import auth, health, nodes, tasks, users

    api.ERROR_SCHEMA = ProblemSchema
    api.spec.components.security_scheme("bearerAuth", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"})
    for module in (health, auth, users, tasks, nodes):
        api.register_blueprint(module.blp)
    _problem_content_type(api)


def _problem_content_type(api: flask_smorest.Api) -> None:
    """Document every error response as ``application/problem+json``, as it is sent."""
    for response in api.spec.to_dict().get("components", {}).get("responses", {}).values():
        content = response.get("content")
        if content and "application/json" in content:
            content["application/problem+json"] = content.pop("application/json")
