"""Control plane ``/v1/nodes/*``: registration, capability, config, ack, reports (wire_contract.md#control-plane)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import marshmallow as ma
from flask import Response, current_app, request
from flask.views import MethodView
from marshmallow import fields

from cynode_core.orchestrator.api import Blueprint
from cynode_core.orchestrator.api.http import client_address, per_source_limit
from cynode_core.orchestrator.api.schemas_common import IncludeUnknownSchema, RequestSchema, rfc3339
from cynode_core.orchestrator.api.tokens import current_node, node_token
from cynode_core.orchestrator.dispatch.job_reports import take_report
from cynode_core.orchestrator.node_client import MAX_ANSWER_BYTES
from cynode_core.orchestrator.services import nodes

blp = Blueprint(
    "nodes", __name__, url_prefix="/v1/nodes", description="Control plane: worker node registration and configuration"
)


class RegistrationSchema(RequestSchema):
    psk = fields.String(load_default="")
    capability = fields.Raw(load_default=None, metadata={"description": "node_capability_report_v1"})


class CapabilitySchema(IncludeUnknownSchema):
    """A ``node_capability_report_v1``: stored as received, unknown fields kept."""

    version = fields.Integer()
    reported_at = fields.String()
    node = fields.Dict()


class ConfigAckSchema(IncludeUnknownSchema):
    version = fields.Raw()
    node_slug = fields.Raw()
    config_version = fields.Raw()
    ack_at = fields.Raw()
    status = fields.Raw()
    error = fields.Raw()


class JobReportSchema(IncludeUnknownSchema):
    """A node's report on a job it took with jobs:start; decoded by the job contract (``JobReport``)."""

    version = fields.Raw(metadata={"description": "1"})
    lease_id = fields.Raw(metadata={"description": "the report.lease_id of the jobs:start it answers"})
    state = fields.Raw(metadata={"description": "running, finished or not_started"})
    result = fields.Raw(metadata={"description": "the RunJobResponse (finished)"})
    error = fields.Raw(metadata={"description": "why the node could not start the job (not_started)"})


class BootstrapSchema(ma.Schema):
    version = fields.Integer(required=True)
    issued_at = fields.String(required=True)
    orchestrator = fields.Dict(required=True)
    auth = fields.Dict(required=True)


class NodeConfigSchema(IncludeUnknownSchema):
    version = fields.Integer(required=True)
    config_version = fields.String(required=True)
    issued_at = fields.String(required=True)
    node_slug = fields.String(required=True)
    orchestrator = fields.Dict(required=True)
    model_cache = fields.Dict()
    policy = fields.Dict()
    constraints = fields.Dict()
    worker_api = fields.Dict()
    inference_backend = fields.Dict()


def _state():  # type: ignore[no-untyped-def]
    return current_app.extensions["cynode"]


def _public_url() -> str:
    return _state().settings.control_public_url


@blp.route("/register")
class Register(MethodView):
    @blp.response(201, BootstrapSchema, description="New node registered")
    @blp.alt_response(200, schema=BootstrapSchema, description="Known node registered again (token rotated)")
    @blp.alt_response(400, description="Malformed body, unsupported capability version or no node slug")
    @blp.alt_response(401, description="Invalid registration PSK")
    @blp.alt_response(429, description="Too many registration attempts from this address")
    @per_source_limit(nodes.check_register_source)
    @blp.arguments(RegistrationSchema)
    def post(self, body: dict[str, Any]) -> Any:
        """Register a node with the pre-shared key; answers its node JWT and endpoints."""
        state = _state()
        with state.db.session() as session:
            node, created = nodes.register(
                session, state.settings, state.cipher, body["psk"], body["capability"], client_ip=client_address()
            )
            node_id, slug, jwt_id = node.id, node.node_slug, node.node_jwt_id
        assert jwt_id is not None
        token, expires_at = node_token(node_id, slug, jwt_id)
        base = _public_url()
        payload = {
            "version": 1,
            "issued_at": rfc3339(dt.datetime.now(dt.UTC)),
            "orchestrator": {
                "base_url": base,
                "endpoints": {
                    "worker_registration_url": f"{base}/v1/nodes/register",
                    "node_report_url": f"{base}/v1/nodes/capability",
                    "node_config_url": f"{base}/v1/nodes/config",
                },
            },
            "auth": {"node_jwt": token, "expires_at": rfc3339(expires_at)},
        }
        return payload, (201 if created else 200)


@blp.route("/capability")
class Capability(MethodView):
    @blp.operation(204, errors={400: "Malformed body"}, bearer="node")
    @blp.arguments(CapabilitySchema)
    def post(self, body: dict[str, Any]) -> Response:
        """Report the node's capabilities (stored as a new snapshot)."""
        state = _state()
        with state.db.session() as session:
            nodes.report_capability(session, state.settings, current_node().id, body)
        return Response(status=204)


@blp.route("/config")
class Config(MethodView):
    @blp.operation(200, NodeConfigSchema, errors={404: "Node not found"}, bearer="node")
    def get(self) -> Any:
        """The node's configuration (node_configuration_payload_v1)."""
        state = _state()
        with state.db.session() as session:
            return nodes.config_payload(session, state.settings, state.cipher, current_node().id, _public_url())

    @blp.operation(204, errors={400: "Malformed ack", 404: "Node not found"}, bearer="node")
    @blp.arguments(ConfigAckSchema)
    def post(self, body: dict[str, Any]) -> Response:
        """Acknowledge a configuration version as `applied` or `failed`."""
        with _state().db.session() as session:
            nodes.record_ack(session, current_node().id, body)
        return Response(status=204)


@blp.before_request
def _reports_may_be_large() -> None:
    """A job's end report carries its outputs inline: it may be as large as a Worker API answer (16 MiB)."""
    if request.endpoint == f"{blp.name}.JobReportView":
        request.max_content_length = MAX_ANSWER_BYTES


@blp.route("/jobs/<uuid:job_id>/report")
class JobReportView(MethodView):
    @blp.operation(
        204,
        errors={400: "Malformed report", 409: "The job no longer runs on this node under this lease"},
        bearer="node",
    )
    @blp.arguments(JobReportSchema)
    def post(self, body: dict[str, Any], job_id: uuid.UUID) -> Response:
        """Report a job taken with jobs:start: still running (renews its lease), finished, or not started."""
        take_report(_state(), current_node().id, job_id, body)
        return Response(status=204)
