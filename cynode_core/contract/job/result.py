"""What a job gives back: the node's ``RunJobResponse``, a dispatch failure, a cancel answer.

The orchestrator stores a job's result as one of two shapes (a run's answer,
or the reason no run answered) and shows it to clients as JSON text in a
fixed key order (docs/wire_contract.md#job-result), whatever order the database
hands the keys back in.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from cynode_core.contract.job.request import WIRE_VERSION
from cynode_core.contract.job.statuses import RunStatus

# Keys a node may add that the orchestrator keeps as they are (later phases fill them).
PASSTHROUGH_KEYS = ("sba_result", "step_executor_result", "artifacts", "run_diagnostics")


def format_time(moment: dt.datetime) -> str:
    """RFC 3339, UTC, second precision, ``Z`` suffix; a naive time is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class BadResult(ValueError):
    """A node's answer is not a RunJobResponse (wrong version, wrong types); the message says which."""


@dataclass(frozen=True)
class Truncation:
    stdout: bool = False
    stderr: bool = False

    def to_json(self) -> dict[str, bool]:
        return {"stdout": self.stdout, "stderr": self.stderr}


@dataclass(frozen=True)
class RunJobResponse:
    """A node's answer to ``jobs:run`` (docs/wire_contract.md#worker-run-job-response).

    ``status`` is kept as the node sent it (a :class:`RunStatus` value from a
    conforming node); ``succeeded`` says whether the job counts as completed.
    ``extras`` holds the pass-through keys a node sent, in contract order.
    A text field a node left out stays ``None`` and is left out again when
    stored, so the stored answer is the node's own.
    """

    task_id: str | None
    job_id: str | None
    status: str | None
    exit_code: int
    stdout: str | None = None
    stderr: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    truncated: Truncation | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    version: int = WIRE_VERSION

    @property
    def succeeded(self) -> bool:
        return self.status == RunStatus.COMPLETED

    def with_final_answer(self) -> RunJobResponse:
        """The answer as stored: a blank ``stdout`` replaced by a sandbox agent's ``final_answer``, if it has one
        (agents_contract.md 5.7)."""
        sba = self.extras.get("sba_result")
        answer = sba.get("final_answer") if isinstance(sba, dict) else None
        if (self.stdout or "").strip() or not isinstance(answer, str) or not answer.strip():
            return self
        return dataclasses.replace(self, stdout=answer)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"version": self.version}
        for key in ("task_id", "job_id", "status", "exit_code", "stdout", "stderr", "started_at", "ended_at"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.truncated is not None:
            out["truncated"] = self.truncated.to_json()
        for key in PASSTHROUGH_KEYS:
            if key in self.extras:
                out[key] = self.extras[key]
        return out

    @classmethod
    def from_json(cls, body: Any) -> RunJobResponse:
        """Read a node's (or the store's) answer; ``BadResult`` when it is not one."""
        if not isinstance(body, dict):
            raise BadResult("worker response is not a JSON object")
        if body.get("version") != WIRE_VERSION:
            raise BadResult(f"unsupported worker response version: {body.get('version')}")
        exit_code = body.get("exit_code", 0)
        if isinstance(exit_code, bool) or not isinstance(exit_code, int):
            raise BadResult("worker response exit_code is not an integer")
        text = {key: body.get(key) for key in ("task_id", "job_id", "status", "stdout", "stderr")}
        if not all(value is None or isinstance(value, str) for value in text.values()):
            raise BadResult("worker response has a text field that is not a string")
        times = {key: body.get(key) for key in ("started_at", "ended_at")}
        if not all(value is None or isinstance(value, str) for value in times.values()):
            raise BadResult("worker response has a time that is not a string")
        truncated = body.get("truncated")
        if truncated is not None and not isinstance(truncated, dict):
            raise BadResult("worker response truncated is not an object")
        return cls(
            task_id=text["task_id"],
            job_id=text["job_id"],
            status=text["status"],
            exit_code=exit_code,
            stdout=without_nul(text["stdout"]),
            stderr=without_nul(text["stderr"]),
            started_at=times["started_at"],
            ended_at=times["ended_at"],
            truncated=None
            if truncated is None
            else Truncation(bool(truncated.get("stdout")), bool(truncated.get("stderr"))),
            extras={key: without_nul(body[key]) for key in PASSTHROUGH_KEYS if key in body},
        )


def without_nul(value: Any) -> Any:
    """``value`` with every NUL character in its strings shown as U+FFFD, as invalid UTF-8 is.

    PostgreSQL text (and jsonb) cannot hold NUL, and a job may print one; one
    character for one keeps a stream's character offsets as the node counted them.
    """
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, list):
        return [without_nul(item) for item in value]
    if isinstance(value, dict):
        return {without_nul(key): without_nul(item) for key, item in value.items()}
    return value


@dataclass(frozen=True)
class DispatchFailure:
    """The stored result of a job no node answered for: why, in words."""

    error: str
    status: str = RunStatus.FAILED.value
    version: int = WIRE_VERSION

    def to_json(self) -> dict[str, Any]:
        return {"error": self.error, "status": self.status, "version": self.version}

    @property
    def stdout(self) -> str:
        return ""

    @property
    def stderr(self) -> str:
        return ""


JobResult = RunJobResponse | DispatchFailure


def result_from_storage(stored: Any) -> JobResult | None:
    """The typed result of a stored ``jobs.result`` (``None`` when there is none or it is unreadable)."""
    if not isinstance(stored, dict):
        return None
    if "error" in stored and "exit_code" not in stored:
        return DispatchFailure(str(stored.get("error") or ""), str(stored.get("status") or "failed"))
    try:
        return RunJobResponse.from_json(stored)
    except BadResult:
        return None


def result_text(stored: Any) -> str | None:
    """A stored result as the JSON text clients see, keys in contract order."""
    result = result_from_storage(stored)
    if result is not None:
        return json.dumps(result.to_json())
    if stored is None:
        return None
    # Not one of our shapes (an old or hand-written row): show it as stored.
    return stored if isinstance(stored, str) else json.dumps(stored)


@dataclass(frozen=True)
class CancelResponse:
    """A node's answer to ``jobs/{job_id}:cancel``."""

    job_id: str
    canceled: bool
    version: int = WIRE_VERSION

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "job_id": self.job_id, "canceled": self.canceled}
