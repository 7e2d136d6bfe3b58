"""What a job asks for: the sandbox request (also the stored job payload) and the Worker API's run request.

The ``sandbox`` object of ``POST /v1/worker/jobs:run`` and the payload the
orchestrator stores on a job are one shape, :class:`SandboxRequest`
(docs/wire_contract.md#job-payload). Decoding a request body follows the
JSON rules of docs/wire_contract.md#worker-run-job: unknown keys are ignored,
``null`` reads as the zero value, and a value of the wrong JSON type is an
error ("Invalid request body"). The checks then run in the order of
docs/wire_contract.md#worker-run-job-checks (command, version, ids), and ours
last: both ids must be canonical UUIDs, because the job id becomes a
directory name and a file name on the node.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cynode_core.contract.errors import InvalidInput
from cynode_core.contract.job.files import JobInput, inputs_from_json

WIRE_VERSION = 1

INVALID_BODY = "Invalid request body"
COMMAND_REQUIRED = "sandbox.command is required when job_spec_json is not set"
UNSUPPORTED_VERSION = "unsupported version"
IDS_REQUIRED = "task_id and job_id are required"
IDS_NOT_UUIDS = "task_id and job_id must be UUIDs"
MAX_GRANT_TOKEN_CHARS = 256

# Canonical 8-4-4-4-12 form only: uuid.UUID() would also take braces,
# "urn:uuid:" prefixes and bare hex, none of which a client should send.
_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def is_uuid(value: str) -> bool:
    """True when ``value`` is a UUID in the canonical hyphenated form."""
    return bool(_UUID_RE.match(value))


class _Decode:
    """Typed reads of one JSON object; a wrong type raises ``InvalidInput(INVALID_BODY)``."""

    def __init__(self, obj: Mapping[str, Any]):
        self.obj = obj

    def integer(self, key: str) -> int:
        value = self.obj.get(key)
        if value is None:
            return 0
        # bool is an int in Python but not a JSON number; 1.5 is not an integer either.
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidInput(INVALID_BODY)
        return value

    def text(self, key: str) -> str:
        value = self.obj.get(key)
        if value is None:
            return ""
        if not isinstance(value, str):
            raise InvalidInput(INVALID_BODY)
        return value

    def flag(self, key: str) -> bool:
        value = self.obj.get(key)
        if value is None:
            return False
        if not isinstance(value, bool):
            raise InvalidInput(INVALID_BODY)
        return value

    def text_list(self, key: str) -> tuple[str, ...]:
        value = self.obj.get(key)
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise InvalidInput(INVALID_BODY)
        return tuple(value)

    def text_map(self, key: str) -> dict[str, str]:
        value = self.obj.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise InvalidInput(INVALID_BODY)
        return dict(value)


@dataclass(frozen=True)
class SandboxRequest:
    """One job's sandbox as the orchestrator asks for it; zero values mean "not asked"."""

    image: str = ""
    command: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    timeout_seconds: int = 0
    network_policy: str = ""
    use_inference: bool = False
    job_spec_json: str = ""
    # Files the job finds under /workspace/inputs (added when the job is sent, never stored with it).
    inputs: tuple[JobInput, ...] = ()

    @classmethod
    def from_json(cls, value: Any) -> SandboxRequest:
        """Decode a ``sandbox`` object (``None`` is the empty request); ``InvalidInput`` on a wrong type."""
        if value is None:
            return cls()
        if not isinstance(value, dict):
            raise InvalidInput(INVALID_BODY)
        read = _Decode(value)
        return cls(
            image=read.text("image"),
            command=read.text_list("command"),
            env=read.text_map("env"),
            timeout_seconds=read.integer("timeout_seconds"),
            network_policy=read.text("network_policy"),
            use_inference=read.flag("use_inference"),
            job_spec_json=read.text("job_spec_json"),
            inputs=inputs_from_json(value.get("inputs")),
        )

    def to_json(self) -> dict[str, Any]:
        """The wire and stored form: ``image`` and ``command`` always, the rest only when set."""
        out: dict[str, Any] = {"image": self.image, "command": list(self.command)}
        if self.env:
            out["env"] = dict(self.env)
        if self.timeout_seconds:
            out["timeout_seconds"] = self.timeout_seconds
        if self.network_policy:
            out["network_policy"] = self.network_policy
        if self.use_inference:
            out["use_inference"] = True
        if self.job_spec_json:
            out["job_spec_json"] = self.job_spec_json
        if self.inputs:
            out["inputs"] = [item.to_json() for item in self.inputs]
        return out

    @property
    def has_work(self) -> bool:
        """A command, or a job spec that stands for one."""
        return bool(self.command) or bool(self.job_spec_json)


class UnusablePayload(ValueError):
    """A stored job payload no node could run (written by an older release or by hand)."""


def payload_from_storage(stored: Any) -> SandboxRequest:
    """The sandbox request a stored ``jobs.payload`` holds; ``UnusablePayload`` naming what is wrong."""
    if stored in (None, ""):
        raise UnusablePayload("job payload is empty")
    if not isinstance(stored, dict):
        raise UnusablePayload("parse payload json: not an object")
    # Only decoding here: what a job may ask is checked where it enters (the
    # gateway for a task, the Worker API for a run request), not again in between.
    try:
        return SandboxRequest.from_json(stored)
    except InvalidInput as exc:
        raise UnusablePayload("parse payload json: a field has the wrong type") from exc


@dataclass(frozen=True)
class ReportLease:
    """What a node that reports back echoes in its job reports (docs/wire_contract.md#worker-start-job).

    ``lease_id`` is the orchestrator's fencing token for this hand-over: a
    report under any other lease is refused. ``heartbeat_seconds`` is how
    often the node says the job still runs (each report renews the lease).
    """

    lease_id: str
    heartbeat_seconds: float

    def to_json(self) -> dict[str, Any]:
        return {"lease_id": self.lease_id, "heartbeat_seconds": self.heartbeat_seconds}

    @classmethod
    def from_json(cls, value: Any) -> ReportLease | None:
        if value is None:
            return None
        if not isinstance(value, dict):
            raise InvalidInput(INVALID_BODY)
        lease_id, every = value.get("lease_id"), value.get("heartbeat_seconds")
        if not isinstance(lease_id, str) or not is_uuid(lease_id):
            raise InvalidInput("report.lease_id must be a UUID")
        if isinstance(every, bool) or not isinstance(every, int | float) or not 0 < every <= 3600:
            raise InvalidInput("report.heartbeat_seconds must be a number of seconds between 0 and 3600")
        return cls(lease_id, float(every))


@dataclass(frozen=True)
class McpGrant:
    """The MCP credential of one job (mcp_contract.md 2.3): the node holds it, the sandbox never sees it.

    ``agent_token`` is a ``sandbox`` agent token the dispatcher minted for
    this job; the node's per-job MCP proxy adds it to the sandbox's tool
    calls. It is left out of ``repr`` so it never reaches a log line.
    """

    agent_token: str = field(repr=False)
    expires_at: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"agent_token": self.agent_token, "expires_at": self.expires_at}

    @classmethod
    def from_json(cls, value: Any) -> McpGrant | None:
        if value is None:
            return None
        if not isinstance(value, dict):
            raise InvalidInput(INVALID_BODY)
        token, expires = value.get("agent_token"), value.get("expires_at", "")
        if not isinstance(token, str) or not 0 < len(token) <= MAX_GRANT_TOKEN_CHARS or not token.isascii():
            raise InvalidInput(f"mcp.agent_token must be a string of 1 to {MAX_GRANT_TOKEN_CHARS} ASCII characters")
        if not isinstance(expires, str) or len(expires) > 64:
            raise InvalidInput("mcp.expires_at must be a timestamp string")
        if not token.isprintable() or " " in token:
            raise InvalidInput("mcp.agent_token must not hold spaces or control characters")
        return cls(token, expires)


@dataclass(frozen=True)
class RunJobRequest:
    """A ``POST /v1/worker/jobs:run`` body (docs/wire_contract.md#worker-run-job).

    ``report`` is set only for ``jobs:start`` (a node that reports back);
    ``jobs:run`` ignores it. ``mcp`` is a sandbox agent's tool credential.
    """

    task_id: str
    job_id: str
    sandbox: SandboxRequest
    version: int = WIRE_VERSION
    report: ReportLease | None = None
    mcp: McpGrant | None = None

    @property
    def job_key(self) -> str:
        """The job id as a node files it (lowercase, so case variants are one job)."""
        return self.job_id.lower()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "version": self.version,
            "task_id": self.task_id,
            "job_id": self.job_id,
            "sandbox": self.sandbox.to_json(),
        }
        if self.report is not None:
            out["report"] = self.report.to_json()
        if self.mcp is not None:
            out["mcp"] = self.mcp.to_json()
        return out

    @classmethod
    def from_json(cls, body: Any) -> RunJobRequest:
        """Decode and validate a parsed body; ``InvalidInput`` worded as docs/wire_contract.md#worker-run-job-checks."""
        if not isinstance(body, dict):
            raise InvalidInput(INVALID_BODY)
        read = _Decode(body)
        request = cls(
            version=read.integer("version"),
            task_id=read.text("task_id"),
            job_id=read.text("job_id"),
            sandbox=SandboxRequest.from_json(body.get("sandbox")),
            report=ReportLease.from_json(body.get("report")),
            mcp=McpGrant.from_json(body.get("mcp")),
        )
        if not request.sandbox.has_work:
            raise InvalidInput(COMMAND_REQUIRED)
        if request.version != WIRE_VERSION:
            raise InvalidInput(UNSUPPORTED_VERSION)
        if not request.task_id or not request.job_id:
            raise InvalidInput(IDS_REQUIRED)
        if not is_uuid(request.task_id) or not is_uuid(request.job_id):
            raise InvalidInput(IDS_NOT_UUIDS)
        return request
