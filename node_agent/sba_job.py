"""A sandbox-agent (SBA) job on the node: its ``/job`` directory, the runner's mounts, its result (agents 5.3).

A job whose ``sandbox.job_spec_json`` is set is an SBA job. The node checks
the spec with the contract's own definition (an invalid one is a failed job
with ``invalid SBA job_spec_json: <reason>``, and no container), makes a
per-job host directory mounted read-write at ``/job`` (``job.json``, a
writable ``result.json``, ``artifacts/``), mounts the runner read-only at
``/opt/cynode/sba`` and runs it as the container's command. Once the
container ended, ``result.json`` becomes the response's ``sba_result`` and
decides the job's status: ``success`` completed, ``failure`` failed,
``timeout`` (or the node's own deadline) timeout; a missing or unreadable
result is a failed job with upstream's texts.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cynode_core.contract import Mount, SandboxOutcome
from cynode_core.contract.job import RunStatus, without_nul
from cynode_core.contract.job.sba import FAILURE, SUCCESS, TIMEOUT, InvalidSpec, JobSpec, SbaResult
from node_agent.sba import JOB_DIR, RUNNER_COMMAND, RUNNER_DIR, install_runner

log = logging.getLogger(__name__)

RESULT_MISSING = "result.json missing or unreadable: {}"
RESULT_INVALID = "result.json invalid or empty (container may have exited before writing result)"


class InvalidSbaJob(ValueError):
    """The job's spec is not valid: the job fails without a container."""

    def outcome(self) -> SandboxOutcome:
        note = f"invalid SBA job_spec_json: {self}"
        return SandboxOutcome(status=RunStatus.FAILED, exit_code=-1, stderr=note.encode())


@dataclass(frozen=True)
class SbaJob:
    """One SBA job's host directory and what the sandbox gets of it."""

    spec: JobSpec
    job_dir: Path
    runner_dir: Path

    @property
    def mounts(self) -> tuple[Mount, ...]:
        return (
            Mount(source=str(self.job_dir), target=JOB_DIR, read_only=False),
            Mount(source=str(self.runner_dir), target=RUNNER_DIR, read_only=True),
        )

    @property
    def command(self) -> list[str]:
        return list(RUNNER_COMMAND)

    def conclude(self, outcome: SandboxOutcome) -> tuple[SandboxOutcome, dict[str, Any] | None]:
        """The outcome as ``result.json`` decides it, and the ``sba_result`` to return (None when unreadable)."""
        try:
            raw = (self.job_dir / "result.json").read_text(encoding="utf-8")
        except OSError as exc:
            return _failed(outcome, RESULT_MISSING.format(exc.strerror or exc)), None
        try:
            result = SbaResult.from_json(json.loads(raw))
        except (ValueError, InvalidSpec):
            return _failed(outcome, RESULT_INVALID), None
        stored = without_nul(result.to_json())
        if outcome.status == RunStatus.TIMEOUT or result.status == TIMEOUT:
            return dataclasses.replace(outcome, status=RunStatus.TIMEOUT), stored
        if result.status == SUCCESS:
            return dataclasses.replace(outcome, status=RunStatus.COMPLETED, exit_code=0), stored
        assert result.status == FAILURE
        exit_code = outcome.exit_code if outcome.exit_code not in (0, -1) else 1
        return dataclasses.replace(outcome, status=RunStatus.FAILED, exit_code=exit_code), stored

    def remove(self) -> None:
        shutil.rmtree(self.job_dir, ignore_errors=True)


class SbaJobs:
    """The node's SBA jobs: one runner directory for all, one ``/job`` directory per job under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._runner: Path | None = None

    def prepare(self, job_key: str, job_spec_json: str) -> SbaJob:
        """The job's spec checked and its ``/job`` directory made; :class:`InvalidSbaJob` for a bad spec."""
        try:
            spec = JobSpec.from_text(job_spec_json)
            spec.validate()
        except (InvalidSpec, ValueError) as exc:
            raise InvalidSbaJob(str(exc)) from exc
        if self._runner is None:
            self._runner = install_runner(self.root / "runner")
        job_dir = self.root / "jobs" / job_key
        shutil.rmtree(job_dir, ignore_errors=True)
        (job_dir / "artifacts").mkdir(parents=True)
        # The sandbox runs as nobody (65534): it writes its result, to-do list and artifacts here.
        for directory in (job_dir, job_dir / "artifacts"):
            directory.chmod(0o777)
        (job_dir / "job.json").write_text(spec.to_text(), encoding="utf-8")
        (job_dir / "job.json").chmod(0o644)
        for name in ("result.json", "todo.json"):
            (job_dir / name).touch()
            (job_dir / name).chmod(0o666)
        return SbaJob(spec, job_dir, self._runner)


def _failed(outcome: SandboxOutcome, message: str) -> SandboxOutcome:
    stderr = outcome.stderr + (b"\n" if outcome.stderr and not outcome.stderr.endswith(b"\n") else b"")
    exit_code = outcome.exit_code if outcome.exit_code not in (0,) else 1
    status = RunStatus.TIMEOUT if outcome.status == RunStatus.TIMEOUT else RunStatus.FAILED
    return dataclasses.replace(outcome, status=status, exit_code=exit_code, stderr=stderr + message.encode())
