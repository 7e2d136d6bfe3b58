"""The Worker API's ``RunJobRequest``: decoding and validation (node contract 5.2).

Decoding follows Go's ``encoding/json`` as upstream's Worker API uses it:
unknown keys are ignored, ``null`` reads as the zero value, and a value of
the wrong JSON type is a decode error (400 ``Invalid request body``). The
checks then run in upstream's order (command, version, ids), and ours last:
both ids must be UUIDs (decisions.md, Acceptance scenarios 7) because the
job id becomes a directory name and a file name on this host.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cynode_core.errors import BadRequest

INVALID_BODY = "Invalid request body"
COMMAND_REQUIRED = "sandbox.command is required when job_spec_json is not set"
UNSUPPORTED_VERSION = "unsupported version"
IDS_REQUIRED = "task_id and job_id are required"
IDS_NOT_UUIDS = "task_id and job_id must be UUIDs"

# Canonical 8-4-4-4-12 form only: uuid.UUID() would also take braces,
# "urn:uuid:" prefixes and bare hex, none of which a client should send.
_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def is_uuid(value: str) -> bool:
    """True when ``value`` is a UUID in the canonical hyphenated form."""
    return bool(_UUID_RE.match(value))


@dataclass(frozen=True)
class SandboxRequest:
    """The ``sandbox`` object of a job request, zero values filled in."""

    image: str = ""
    command: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    timeout_seconds: int = 0
    network_policy: str = ""
    use_inference: bool = False
    job_spec_json: str = ""


@dataclass(frozen=True)
class RunJobRequest:
    """A validated ``POST /v1/worker/jobs:run`` body."""

    version: int
    task_id: str
    job_id: str
    sandbox: SandboxRequest

    @property
    def job_key(self) -> str:
        """The job id as this node files it (lowercase, so case variants are one job)."""
        return self.job_id.lower()


def _invalid() -> BadRequest:
    return BadRequest(INVALID_BODY)


def _get_int(obj: Mapping[str, Any], key: str) -> int:
    value = obj.get(key)
    if value is None:
        return 0
    # bool is an int in Python but not a JSON number; Go refuses both it and 1.5.
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid()
    return value


def _get_str(obj: Mapping[str, Any], key: str) -> str:
    value = obj.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _invalid()
    return value


def _get_bool(obj: Mapping[str, Any], key: str) -> bool:
    value = obj.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _invalid()
    return value


def _get_command(obj: Mapping[str, Any]) -> tuple[str, ...]:
    value = obj.get("command")
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(arg, str) for arg in value):
        raise _invalid()
    return tuple(value)


def _get_env(obj: Mapping[str, Any]) -> dict[str, str]:
    value = obj.get("env")
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise _invalid()
    return dict(value)


def _decode_sandbox(value: Any) -> SandboxRequest:
    if value is None:
        return SandboxRequest()
    if not isinstance(value, dict):
        raise _invalid()
    return SandboxRequest(
        image=_get_str(value, "image"),
        command=_get_command(value),
        env=_get_env(value),
        timeout_seconds=_get_int(value, "timeout_seconds"),
        network_policy=_get_str(value, "network_policy"),
        use_inference=_get_bool(value, "use_inference"),
        job_spec_json=_get_str(value, "job_spec_json"),
    )


def parse_run_job_request(body: Any) -> RunJobRequest:
    """Decode and validate a decoded JSON body; raise ``BadRequest`` with the contract's detail.

    ``body`` is what ``json.loads`` returned for the request body.
    """
    if not isinstance(body, dict):
        raise _invalid()
    request = RunJobRequest(
        version=_get_int(body, "version"),
        task_id=_get_str(body, "task_id"),
        job_id=_get_str(body, "job_id"),
        sandbox=_decode_sandbox(body.get("sandbox")),
    )
    if not request.sandbox.command and not request.sandbox.job_spec_json:
        raise BadRequest(COMMAND_REQUIRED)
    if request.version != 1:
        raise BadRequest(UNSUPPORTED_VERSION)
    if not request.task_id or not request.job_id:
        raise BadRequest(IDS_REQUIRED)
    if not is_uuid(request.task_id) or not is_uuid(request.job_id):
        raise BadRequest(IDS_NOT_UUIDS)
    return request
