"""Job execution: a RunJobRequest in, one sandbox run, a RunJobResponse out.

The executor owns the node-side rules of the contract (sections 5 and 6):
validation, the effective timeout, the per-job workspace, the sandbox
environment, the hardening defaults, the response shape. It adds three
things upstream lacks:

- Idempotency by ``job_id``: a repeat of a running job waits for that run,
  a repeat of a finished job gets the stored result (see ``job_store``).
- Slots: at most ``settings.job_slots`` jobs run at once; one more is
  refused with 503 and ``Retry-After: 1`` before anything runs, so the
  orchestrator can try again or place it elsewhere.
- Cancel: ``cancel(job_id)`` stops a running job's container; its result
  is ``failed`` with a note in ``stderr``.

Phase 1.5 (contract section 8): a job with ``sandbox.use_inference`` on a
node with a started inference backend gets its own inference proxy (see
``inference_proxy``) on a Unix socket, mounted read-only at ``/run/cynode``,
and ``INFERENCE_PROXY_URL``; its network stays ``none``. On a node without a
backend such a job runs as a plain job, as upstream does, with a note in
its ``stderr`` so the missing proxy is not a mystery.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from cynode_core.contract import Mount, SandboxOutcome, SandboxRuntime, SandboxSpec
from cynode_core.contract.errors import CynodeError, JobNotStarted, NotFound, Unavailable
from cynode_core.contract.job import CancelResponse, RunJobRequest, RunJobResponse, RunStatus
from node_agent.inference_proxy import (
    READY_TIMEOUT,
    SANDBOX_PROXY_URL,
    SANDBOX_SOCKET_DIR,
    InferenceProxy,
    ProxyError,
    loopback_upstream,
)
from node_agent.job_result import (
    CANCEL_NOTE,
    SHUTDOWN_NOTE,
    build_run_job_response,
    interrupted_response,
    utc_now,
)
from node_agent.job_store import STATE_FINISHED, JobRecord, JobStore
from node_agent.metrics import NodeMetrics
from node_agent.settings import NodeSettings

log = logging.getLogger(__name__)

# Hard ceiling of the contract (5.3): no configuration can raise the request cap above it.
CONTRACT_MAX_REQUEST_BYTES = 10 * 1024 * 1024
# The identity jobs run as (decisions.md, Beyond upstream: non-root sandboxes).
SANDBOX_UID = 65534
SANDBOX_GID = 65534
WORKSPACE_MOUNT = "/workspace"
RESERVED_ENV = ("CYNODE_TASK_ID", "CYNODE_JOB_ID", "CYNODE_WORKSPACE_DIR")
# How long a cancel keeps asking the runtime to stop a job whose container is
# not there yet (runtime.run was called but had not created it).
CANCEL_RETRY_SECONDS = 5.0
NO_INFERENCE_NOTE = (
    "[cynode] use_inference was requested, but this node has no inference backend: "
    "the job ran without an inference proxy (no INFERENCE_PROXY_URL)\n"
)


class WorkspaceError(JobNotStarted):
    """The per-job workspace could not be made (500, contract 5.2)."""


class JobExecutionError(JobNotStarted):
    """The node could not start a job for a reason of its own (500, contract 5.2)."""


@dataclass
class _ActiveJob:
    """A job this process is running; repeats and cancels wait on ``done``."""

    task_id: str
    done: threading.Event = field(default_factory=threading.Event)
    cancel_requested: bool = False
    cancel_note: str = CANCEL_NOTE
    handed_to_runtime: bool = False
    result: RunJobResponse | None = None
    error: CynodeError | None = None


class JobExecutor:
    """Runs Worker API jobs on a sandbox runtime, at most ``settings.job_slots`` at once."""

    def __init__(
        self,
        runtime: SandboxRuntime,
        settings: NodeSettings,
        *,
        store: JobStore | None = None,
        metrics: NodeMetrics | None = None,
    ) -> None:
        self._runtime = runtime
        self._settings = settings
        self._workspace_root = settings.resolved_workspace_root
        self._store = store or JobStore(settings.resolved_state_dir / "jobs")
        self._lock = threading.Lock()
        self._active: dict[str, _ActiveJob] = {}
        self._accepting = True
        self._max_request_bytes: int | None = None
        self._max_job_timeout: int | None = None
        self._inference_url: str | None = None
        self._proxy_root = settings.resolved_state_dir / "proxy"
        self.proxy_ready_timeout = READY_TIMEOUT
        # One registry per executor; the Worker API serves it at /metrics.
        self.metrics = metrics if metrics is not None else NodeMetrics()
        self.metrics.watch_slots(lambda: self.running_jobs, lambda: self._settings.job_slots)
        self._recover()

    # ------------------------------------------------------------------ limits

    def apply_constraints(self, *, max_request_bytes: int | None, max_job_timeout_seconds: int | None) -> None:
        """Apply the orchestrator config's ``constraints`` (contract 5.3, 5.4); ``None`` or <= 0 = unset."""
        self._max_request_bytes = max_request_bytes if max_request_bytes and max_request_bytes > 0 else None
        self._max_job_timeout = (
            max_job_timeout_seconds if max_job_timeout_seconds and max_job_timeout_seconds > 0 else None
        )

    @property
    def max_request_bytes(self) -> int:
        """Effective request body cap: min(local setting, config constraint, 10 MiB)."""
        caps = [self._settings.max_request_bytes, CONTRACT_MAX_REQUEST_BYTES]
        if self._max_request_bytes is not None:
            caps.append(self._max_request_bytes)
        return min(caps)

    def effective_timeout(self, requested: int) -> int:
        """min(requested if > 0 else default, max, config constraint), per contract 5.4."""
        timeout = requested if requested > 0 else self._settings.default_timeout_seconds
        caps = [timeout, self._settings.max_timeout_seconds]
        if self._max_job_timeout is not None:
            caps.append(self._max_job_timeout)
        return min(caps)

    def set_inference_backend(self, base_url: str | None) -> None:
        """Give ``use_inference`` jobs a proxy to this loopback Ollama-API URL (``None``: no backend).

        The node manager calls it once its inference backend has started.
        """
        self._inference_url = base_url.rstrip("/") if base_url else None
        if self._inference_url is not None:
            try:
                loopback_upstream(self._inference_url)
            except ProxyError as exc:
                # Proxy traffic never leaves the node: each use_inference job will fail with this.
                log.warning("use_inference jobs will fail: %s", exc)

    @property
    def inference_backend_url(self) -> str | None:
        return self._inference_url

    @property
    def running_jobs(self) -> int:
        with self._lock:
            return len(self._active)

    # -------------------------------------------------------------------- run

    def run(self, request: RunJobRequest) -> RunJobResponse:
        """Run a job once per ``job_id``; return its RunJobResponse.

        Raises ``Unavailable`` when every slot is busy or the node is
        stopping, and ``JobNotStarted`` (``WorkspaceError``,
        ``JobExecutionError``) when the node could not start the job.
        Sandbox failures are results, not exceptions.
        """
        key = request.job_key
        with self._lock:
            job = self._active.get(key)
            owner = job is None
            if job is None:
                record = self._store.get_finished(key)
                if record is not None and record.result is not None:
                    log.info("job %s: repeated dispatch answered from the stored result", key)
                    return record.result
                if not self._accepting:
                    raise Unavailable("Node is shutting down", retry_after=1)
                if len(self._active) >= self._settings.job_slots:
                    raise Unavailable("No free job slot on this node", retry_after=1)
                job = _ActiveJob(task_id=request.task_id)
                self._active[key] = job
        if not owner:
            log.info("job %s: repeated dispatch waits for the run in progress", key)
            job.done.wait()
            if job.error is not None:
                raise job.error
            assert job.result is not None
            return job.result
        try:
            job.result = self._execute(request, job)
            return job.result
        except CynodeError as exc:
            job.error = exc
            self.metrics.job_finished("error")
            raise
        except Exception as exc:  # a bug of ours must not leave waiters hanging
            log.exception("job %s: unexpected error", key)
            job.error = JobExecutionError("Job execution failed")
            self.metrics.job_finished("error")
            raise job.error from exc
        finally:
            with self._lock:
                self._active.pop(key, None)
            job.done.set()

    def _execute(self, request: RunJobRequest, job: _ActiveJob) -> RunJobResponse:
        key = request.job_key
        timeout = self.effective_timeout(request.sandbox.timeout_seconds)
        try:
            self._store.mark_running(key, request.task_id)
        except OSError as exc:
            # Without the marker a crash could lead to a second run; refuse while nothing ran.
            log.error("job %s: cannot record the job start: %s", key, exc)
            raise JobExecutionError("Job execution failed") from exc
        try:
            workspace = self._create_workspace(key)
        except OSError as exc:
            log.error("job %s: workspace creation failed: %s", key, exc)
            self._store.discard(key)
            raise WorkspaceError("Workspace creation failed") from exc
        started = utc_now()
        try:
            outcome = self._run_in_sandbox(request, job, workspace, timeout)
            ended = utc_now()
            with self._lock:
                canceled = job.cancel_requested
                cancel_note = job.cancel_note if canceled else None
            result = build_run_job_response(
                task_id=request.task_id,
                job_id=request.job_id,
                outcome=outcome,
                started_at=started,
                ended_at=ended,
                max_output_bytes=self._settings.max_output_bytes,
                cancel_note=cancel_note,
            )
            self._store.save_finished(JobRecord(key, request.task_id, STATE_FINISHED, canceled=canceled, result=result))
        finally:
            self._remove_workspace(workspace)
        self.metrics.job_finished("canceled" if canceled else str(result.status), (ended - started).total_seconds())
        log.info(
            "job %s (task %s): %s, exit code %s, %.1f s",
            key,
            request.task_id,
            result.status,
            result.exit_code,
            (ended - started).total_seconds(),
        )
        return result

    def _run_in_sandbox(self, request: RunJobRequest, job: _ActiveJob, workspace: Path, timeout: int) -> SandboxOutcome:
        with self._lock:
            if job.cancel_requested:
                return SandboxOutcome(status=RunStatus.FAILED, exit_code=-1)
            job.handed_to_runtime = True
        key = request.job_key
        proxy: InferenceProxy | None = None
        note = b""
        if request.sandbox.use_inference:
            if self._inference_url is None:
                # Upstream runs such a job plainly and silently; we run it plainly and say so.
                log.warning(
                    "job %s: use_inference requested, but this node has no inference backend; "
                    "running it without an inference proxy",
                    key,
                )
                note = NO_INFERENCE_NOTE.encode()
            else:
                proxy, failure = self._start_proxy(key)
                if failure is not None:
                    return failure
        try:
            spec = self._build_spec(request, workspace, timeout, proxy)
            log.info(
                "job %s (task %s): starting in %s, timeout %d s%s",
                key,
                request.task_id,
                spec.image,
                timeout,
                " with an inference proxy" if proxy else "",
            )
            called_at, clock = utc_now(), time.perf_counter()
            try:
                outcome = self._runtime.run(spec)
            except Exception as exc:  # noqa: BLE001 - contract 6: a runtime error is a failed job, answered 200
                log.warning("job %s: runtime error: %s", key, exc)
                outcome = SandboxOutcome(status=RunStatus.FAILED, exit_code=-1, stderr=f"runtime error: {exc}".encode())
            self.metrics.sandbox_ran(time.perf_counter() - clock, called_at, outcome)
        finally:
            if proxy is not None:
                proxy.close()
        if note:
            outcome.stderr = note + outcome.stderr
        return outcome

    def _start_proxy(self, key: str) -> tuple[InferenceProxy | None, SandboxOutcome | None]:
        """Start and health-check the job's inference proxy: ``(proxy, None)``, or ``(None, failed outcome)``."""
        assert self._inference_url is not None
        try:
            proxy = InferenceProxy(self._proxy_root / key, self._inference_url, name=key, metrics=self.metrics)
            proxy.start()
        except Exception as exc:  # noqa: BLE001 - contract 8: a proxy failure is a failed job, answered 200
            log.warning("job %s: inference proxy did not start: %s", key, exc)
            return None, SandboxOutcome(status=RunStatus.FAILED, exit_code=-1, stderr=f"proxy start: {exc}\n".encode())
        try:
            proxy.wait_ready(self.proxy_ready_timeout)
        except ProxyError as exc:
            proxy.close()
            log.warning("job %s: inference proxy not healthy: %s", key, exc)
            return None, SandboxOutcome(
                status=RunStatus.FAILED, exit_code=-1, stderr=f"proxy readiness: {exc}\n".encode()
            )
        return proxy, None

    def _build_spec(
        self, request: RunJobRequest, workspace: Path, timeout: int, proxy: InferenceProxy | None = None
    ) -> SandboxSpec:
        settings = self._settings
        env = build_sandbox_env(request)
        mounts: list[Mount] = []
        if proxy is not None:
            # Only the socket's own directory, read-only; /run itself is a tmpfs under --read-only.
            mounts.append(Mount(source=str(proxy.socket_dir), target=SANDBOX_SOCKET_DIR, read_only=True))
            env["INFERENCE_PROXY_URL"] = SANDBOX_PROXY_URL
        return SandboxSpec(
            job_id=request.job_key,
            task_id=request.task_id,
            image=settings.resolve_image(request.sandbox.image),
            command=list(request.sandbox.command),
            env=env,
            workspace_dir=str(workspace),
            timeout_seconds=timeout,
            max_output_bytes=settings.max_output_bytes,
            # Every policy value means deny-all in Phase 1 (decisions.md, Acceptance 6);
            # normalising here keeps a runtime from honouring anything else.
            network_policy="none",
            user=f"{SANDBOX_UID}:{SANDBOX_GID}",
            memory_limit=settings.sandbox_memory,
            pids_limit=settings.sandbox_pids if settings.sandbox_pids > 0 else None,
            cpus=settings.sandbox_cpus,
            read_only_root=True,
            mounts=tuple(mounts),
        )

    # -------------------------------------------------------------- workspace

    def _create_workspace(self, key: str) -> Path:
        path = self._workspace_root / key
        self._workspace_root.mkdir(parents=True, exist_ok=True, mode=0o700)
        if path.exists():
            # Left by a crash: start clean rather than hand a job someone else's files.
            shutil.rmtree(path)
        path.mkdir(mode=0o700)
        if os.geteuid() == 0:
            # The sandbox runs as 65534:65534; 0700 keeps everyone else out.
            os.chown(path, SANDBOX_UID, SANDBOX_GID)
        else:
            # Rootless: the sandbox's 65534 is a subordinate uid we cannot chown
            # to. The workspace root is 0700 and ours, so no other host user can
            # reach this directory; each sandbox mounts only its own.
            path.chmod(0o777)
        return path

    def _remove_workspace(self, path: Path) -> None:
        if self._settings.keep_workspaces:
            return
        shutil.rmtree(path, ignore_errors=True)

    # ----------------------------------------------------------------- cancel

    def cancel(self, job_id: str, *, note: str = CANCEL_NOTE) -> CancelResponse:
        """Stop a job (``job_id`` a UUID); idempotent.

        ``canceled`` is true when the job was (or had already been) stopped
        by a cancel, false when it had finished on its own first. Raises
        ``NotFound`` for an unknown job. ``note`` ends the canceled job's
        ``stderr``.
        """
        key = job_id.lower()
        with self._lock:
            job = self._active.get(key)
            if job is not None:
                if not job.cancel_requested:
                    job.cancel_requested, job.cancel_note = True, note
                handed = job.handed_to_runtime
        if job is None:
            record = self._store.get_finished(key)
            if record is None:
                raise NotFound("Job not found")
            return CancelResponse(job_id, record.canceled)
        log.info("job %s: cancel requested", key)
        if handed:
            self._stop_container(key, job)
        return CancelResponse(job_id, True)

    def _stop_container(self, key: str, job: _ActiveJob) -> None:
        # runtime.run may not have created the container yet; keep asking
        # briefly until it stops one or the job ends by itself.
        deadline = time.monotonic() + CANCEL_RETRY_SECONDS
        while True:
            try:
                if self._runtime.cancel(key):
                    return
            except Exception as exc:  # noqa: BLE001 - a failed stop must not fail the cancel call
                log.warning("job %s: runtime cancel failed: %s", key, exc)
            if job.done.wait(0.1) or time.monotonic() >= deadline:
                return

    # --------------------------------------------------------------- shutdown

    def stop_accepting(self) -> None:
        """Refuse new jobs (503) from now on; repeats of finished jobs are still answered."""
        with self._lock:
            self._accepting = False

    def cancel_all(self) -> None:
        """Cancel every running job (node shutdown)."""
        with self._lock:
            keys = list(self._active)
        for key in keys:
            try:
                self.cancel(key, note=SHUTDOWN_NOTE)
            except NotFound:
                pass  # finished meanwhile

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no job runs; False when ``timeout`` passed first."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                jobs = list(self._active.values())
            if not jobs:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            jobs[0].done.wait(min(remaining, 0.5))

    # --------------------------------------------------------------- recovery

    def _recover(self) -> None:
        """Settle jobs a previous agent process left running: failed, not re-run.

        Running a job again could repeat its effects, and the orchestrator
        re-dispatches under the same ``job_id`` precisely because it relies
        on the node not to. A failed result with a clear reason is the
        safe answer; the orchestrator's retry policy decides what follows.
        """

        def finish(record: JobRecord) -> JobRecord:
            result = interrupted_response(record.task_id, record.job_id, utc_now())
            return JobRecord(record.job_id, record.task_id, STATE_FINISHED, result=result)

        # No proxy outlives the agent process that ran it: whatever is here was left by a crash.
        shutil.rmtree(self._proxy_root, ignore_errors=True)
        interrupted = self._store.recover(finish, retention_seconds=self._settings.job_result_retention)
        for key in interrupted:
            log.warning("job %s was running when the agent stopped; recorded as failed", key)
            try:
                self._runtime.cancel(key)  # best effort: its container may still exist
            except Exception as exc:  # noqa: BLE001 - best effort, recovery goes on
                log.warning("job %s: could not stop a leftover container: %s", key, exc)
            shutil.rmtree(self._workspace_root / key, ignore_errors=True)


def build_sandbox_env(request: RunJobRequest) -> dict[str, str]:
    """The container environment: the node's ``CYNODE_*`` first, then the request's.

    The request cannot override the three reserved names (silently dropped,
    as upstream); nothing of the agent's own environment is added.
    """
    env = {
        "CYNODE_TASK_ID": request.task_id,
        "CYNODE_JOB_ID": request.job_id,
        "CYNODE_WORKSPACE_DIR": WORKSPACE_MOUNT,
    }
    for name, value in request.sandbox.env.items():
        if name not in RESERVED_ENV:
            env[name] = value
    return env
