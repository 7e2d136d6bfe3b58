"""Node registration, capability reports, configuration delivery and acks (docs/wire_contract.md#control-plane)."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, select, text
from sqlalchemy.orm import Session
from ulid import ULID

from cynode_core.contract.errors import InvalidInput, NotAuthenticated, NotFound
from cynode_core.orchestrator.models import Job, Node, NodeCapability
from cynode_core.orchestrator.services import audit, rate_limits
from cynode_core.orchestrator.services.audit import ClientInfo
from cynode_core.orchestrator.services.node_urls import checked_worker_url
from cynode_core.orchestrator.services.secrets import TokenCipher
from cynode_core.orchestrator.settings import OrchestratorSettings

log = logging.getLogger(__name__)

ACK_STATUSES = ("applied", "failed")


def psk_matches(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def capability_hash(capability: dict[str, Any]) -> str:
    canonical = json.dumps(capability, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def new_config_version() -> str:
    """A ULID: lexicographically monotonic, opaque to nodes (docs/wire_contract.md#node-config)."""
    return str(ULID())


def _reported_url(capability: dict[str, Any], settings: OrchestratorSettings) -> str | None:
    """The node's own ``worker_api.base_url`` once it passes ``services.node_urls``; None when it names none."""
    worker_api = capability.get("worker_api")
    if isinstance(worker_api, dict) and isinstance(worker_api.get("base_url"), str):
        url = worker_api["base_url"].strip().rstrip("/")
        return checked_worker_url(url, settings.node_url_networks) if url else None
    return None


def _slots(capability: dict[str, Any]) -> int:
    sandbox = capability.get("sandbox")
    value = sandbox.get("max_concurrency") if isinstance(sandbox, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 1


def _apply_capability(
    session: Session, node: Node, capability: dict[str, Any], reported_url: str | None, settings: OrchestratorSettings
) -> None:
    now = dt.datetime.now(dt.UTC)
    session.add(NodeCapability(node_id=node.id, capability_snapshot=capability, reported_at=now))
    node.capability_hash = capability_hash(capability)
    node.last_capability_at = now
    node.last_seen_at = now
    node.max_concurrency = _slots(capability)
    node.worker_api_target_url = settings.worker_api_target_url or node.worker_api_url_override or reported_url


def register(
    session: Session,
    settings: OrchestratorSettings,
    cipher: TokenCipher,
    psk: str,
    capability: Any,
    *,
    client_ip: str | None,
) -> tuple[Node, bool]:
    """Create or re-register a node; a re-registration rotates its Worker API token.

    Every registration names a new node JWT id (``node_jwt_id``): the JWT of
    the previous registration of the slug stops working at once, whoever
    registers (docs/decisions.md, Orchestrator 17).
    """
    assert settings.node_psk is not None
    if not psk_matches(psk, settings.node_psk):
        audit.record(session, "node_register", success=False, ip_address=client_ip, reason="invalid psk")
        session.commit()
        raise NotAuthenticated("Invalid registration PSK")
    if not isinstance(capability, dict) or capability.get("version") != 1:
        raise InvalidInput("Unsupported capability version")
    node_info = capability.get("node")
    slug = node_info.get("node_slug") if isinstance(node_info, dict) else None
    if not isinstance(slug, str) or not slug.strip():
        raise InvalidInput("Node slug is required")
    reported_url = _reported_url(capability, settings)
    node = session.scalar(select(Node).where(Node.node_slug == slug).with_for_update())
    created = node is None
    if node is None:
        node = Node(node_slug=slug)
        session.add(node)
    else:
        _warn_if_live(node, settings, client_ip)
    node.node_jwt_id = uuid.uuid4()
    node.status = "active"
    # A fresh token means a fresh configuration the node must fetch and ack again.
    node.worker_api_bearer_token = cipher.encrypt(secrets.token_urlsafe(32))
    node.config_version = new_config_version()
    session.flush()
    _apply_capability(session, node, capability, reported_url, settings)
    audit.record(
        session,
        "node_registered" if created else "node_reregistered",
        success=True,
        subject_handle=slug,
        ip_address=client_ip,
        reason=None if created else "previous node token revoked; worker api token rotated",
    )
    return node, created


def _warn_if_live(node: Node, settings: OrchestratorSettings, client_ip: str | None) -> None:
    """Say so in the log when a slug that was reporting lately is registered again (a restart, or not)."""
    if node.last_seen_at is None:
        return
    silent = (dt.datetime.now(dt.UTC) - node.last_seen_at).total_seconds()
    if silent < settings.node_heartbeat_timeout:
        log.warning(
            "node %s registered again from %s while live (last heard %.0f s ago); its previous node token is revoked",
            node.node_slug,
            client_ip or "an unknown address",
            silent,
        )


def node_jwt_current(session: Session, node_id: uuid.UUID, jwt_id: uuid.UUID) -> bool:
    """False when ``jwt_id`` is not the node's latest registration; a node without a row passes (its route 404s)."""
    current = session.execute(select(Node.node_jwt_id).where(Node.id == node_id)).first()
    return current is None or current[0] == jwt_id


def check_register_source(session: Session, settings: OrchestratorSettings, client: ClientInfo) -> None:
    """Count a registration attempt for the client address; 429 past the per-minute limit."""
    rate_limits.count_attempt(
        session,
        rate_limits.REGISTER_ATTEMPTS,
        settings.register_rate_per_minute,
        "Too many registration attempts",
        "node_register",
        client,
    )


def report_capability(
    session: Session, settings: OrchestratorSettings, node_id: uuid.UUID, capability: dict[str, Any]
) -> None:
    node = session.get(Node, node_id)
    if node is None:
        raise NotFound("Node not found")
    _apply_capability(session, node, capability, _reported_url(capability, settings), settings)


def latest_capability(session: Session, node_id: uuid.UUID) -> dict[str, Any]:
    snapshot = session.scalar(
        select(NodeCapability.capability_snapshot)
        .where(NodeCapability.node_id == node_id)
        .order_by(NodeCapability.reported_at.desc())
        .limit(1)
    )
    return snapshot or {}


def config_payload(
    session: Session, settings: OrchestratorSettings, cipher: TokenCipher, node_id: uuid.UUID, public_url: str
) -> dict[str, Any]:
    """The ``node_configuration_payload_v1`` for a node (docs/wire_contract.md#node-config)."""
    node = session.get(Node, node_id)
    if node is None:
        raise NotFound("Node not found")
    if not node.config_version:
        node.config_version = new_config_version()
    node.last_seen_at = dt.datetime.now(dt.UTC)
    payload: dict[str, Any] = {
        "version": 1,
        "config_version": node.config_version,
        "issued_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "node_slug": node.node_slug,
        "orchestrator": {
            "base_url": public_url,
            "endpoints": {
                "worker_api_target_url": node.worker_api_target_url or "",
                "node_report_url": f"{public_url}/v1/nodes/capability",
            },
        },
        "model_cache": {"cache_url": ""},
        "policy": {"sandbox": {"default_network_policy": "restricted"}},
        "constraints": {"max_job_timeout_seconds": 10800},
    }
    if node.worker_api_bearer_token:
        payload["worker_api"] = {"orchestrator_bearer_token": cipher.decrypt(node.worker_api_bearer_token)}
    inference = latest_capability(session, node.id).get("inference")
    if isinstance(inference, dict) and inference.get("supported") is True:
        backend: dict[str, Any] = {
            "variant": "cpu",
            "port": 11434,
            "env": {"OLLAMA_CONTEXT_LENGTH": "8192", "OLLAMA_NUM_CTX": "8192"},
            "selected_model": settings.inference_model,
        }
        if not inference.get("existing_service"):
            backend["enabled"] = True
        payload["inference_backend"] = backend
    return payload


def record_ack(session: Session, node_id: uuid.UUID, body: dict[str, Any]) -> None:
    """Store a ``node_config_ack_v1`` after the checks of docs/wire_contract.md#node-config-ack, in their order."""
    node = session.get(Node, node_id)
    if node is None:
        raise NotFound("Node not found")
    if body.get("version") != 1:
        raise InvalidInput("Unsupported config ack version")
    if body.get("node_slug") != node.node_slug:
        raise InvalidInput("node_slug does not match authenticated node")
    if body.get("status") not in ACK_STATUSES:
        raise InvalidInput("status must be applied or failed")
    version = body.get("config_version")
    node.config_ack_version = version if isinstance(version, str) else None
    node.config_ack_status = body["status"]
    node.config_ack_at = _parse_time(body.get("ack_at"))
    error = body.get("error")
    if isinstance(error, dict) and error.get("message"):
        node.config_ack_error = str(error["message"])[:4000]
    node.last_seen_at = dt.datetime.now(dt.UTC)
    if node.config_ack_status == "applied":
        # A node just became dispatchable: wake dispatchers waiting for one.
        session.execute(text("SELECT pg_notify('cynode_jobs', '')"))


def _parse_time(value: Any) -> dt.datetime:
    if isinstance(value, str) and value:
        try:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
        except ValueError:
            pass
    return dt.datetime.now(dt.UTC)


# Default silence after which a node gets no jobs (three missed 60 s reports).
HEARTBEAT_TIMEOUT = 180.0


def dispatchable_clause(heartbeat_timeout: float = HEARTBEAT_TIMEOUT):  # type: ignore[no-untyped-def]
    """Active, acked ``applied`` for the current config version, URL and token known, heard from lately."""
    return and_(
        Node.last_seen_at > func.now() - dt.timedelta(seconds=heartbeat_timeout),
        Node.status == "active",
        Node.config_ack_status == "applied",
        Node.config_ack_version == Node.config_version,
        Node.worker_api_target_url.is_not(None),
        Node.worker_api_target_url != "",
        Node.worker_api_bearer_token.is_not(None),
    )


@dataclass(frozen=True)
class NodeRow:
    id: uuid.UUID
    slug: str
    status: str
    url: str | None
    max_concurrency: int
    running: int
    config_version: str | None
    ack_status: str | None
    ack_version: str | None
    ack_error: str | None
    last_seen_at: dt.datetime | None
    capability: dict[str, Any]


def list_nodes(
    session: Session, *, only_dispatchable: bool = False, heartbeat_timeout: float = HEARTBEAT_TIMEOUT
) -> list[NodeRow]:
    running = (
        select(Job.node_id, func.count().label("n")).where(Job.status == "running").group_by(Job.node_id).subquery()
    )
    latest = (
        select(NodeCapability.node_id, func.max(NodeCapability.reported_at).label("at"))
        .group_by(NodeCapability.node_id)
        .subquery()
    )
    stmt = (
        select(Node, func.coalesce(running.c.n, 0), NodeCapability.capability_snapshot)
        .outerjoin(running, running.c.node_id == Node.id)
        .outerjoin(latest, latest.c.node_id == Node.id)
        .outerjoin(NodeCapability, and_(NodeCapability.node_id == Node.id, NodeCapability.reported_at == latest.c.at))
        .order_by(Node.node_slug)
    )
    if only_dispatchable:
        stmt = stmt.where(dispatchable_clause(heartbeat_timeout))
    rows = []
    for node, n_running, snapshot in session.execute(stmt):
        rows.append(
            NodeRow(
                node.id,
                node.node_slug,
                node.status,
                node.worker_api_target_url,
                node.max_concurrency,
                int(n_running),
                node.config_version,
                node.config_ack_status,
                node.config_ack_version,
                node.config_ack_error,
                node.last_seen_at,
                snapshot or {},
            )
        )
    return rows


def set_url_override(session: Session, settings: OrchestratorSettings, slug: str, url: str | None) -> Node:
    """An admin's Worker API URL for a node (checked like a reported one); None: back to the node's own."""
    node = session.scalar(select(Node).where(Node.node_slug == slug))
    if node is None:
        raise NotFound(f"no node {slug!r}")
    url = checked_worker_url(url, settings.node_url_networks) if url is not None else None
    node.worker_api_url_override = url
    node.worker_api_target_url = url or _reported_url(latest_capability(session, node.id), settings)
    return node


def worker_token(cipher: TokenCipher, node: Node) -> str | None:
    return cipher.decrypt(node.worker_api_bearer_token) if node.worker_api_bearer_token else None


def worker_tokens(session: Session, cipher: TokenCipher, ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The Worker API bearer tokens of the nodes ``ids`` that have one, decrypted."""
    rows = session.execute(select(Node.id, Node.worker_api_bearer_token).where(Node.id.in_(ids))).all()
    return {node_id: cipher.decrypt(token) for node_id, token in rows if token}
