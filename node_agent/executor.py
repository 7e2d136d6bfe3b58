"""Job execution: a typed ``RunJobRequest`` in, one sandbox run, a ``RunJobResponse`` out.

The executor holds the node-side rules of a run (docs/wire_contract.md#worker-api):
the effective timeout and request cap, idempotency by ``job_id`` (with
``job_store``), slots, and cancellation; ``run`` answers when the job ends,
``start`` at once (``jobs:start``). It raises domain errors; the Worker API
alone turns them into HTTP. Helpers: ``active_job``, ``job_limits``,
``job_cancel``, ``sandbox_spec``, ``workspace``, ``job_inference``,
``recovery`` and ``job_result``.

A job taken with ``start`` ends as soon as its container exited (the
runtime's ``on_exit``): its slot is free and its end reported while the
runtime removes the container and its workspace is released.

It is the one place that tracks a running job's cancellation: the runtime's
``cancel(job_id)`` only stops the job's container if one is running, and
the executor asks again until one was stopped or the run has ended.
"""

from __future__ import annotations

import contextvars
import dataclasses
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Sequence

from cynode_core.contract import OutputSink, SandboxOutcome, SandboxRuntime, WarmingRuntime
from cynode_core.contract.errors import CynodeError, NotFound, Unavailable
from cynode_core.contract.job import CancelResponse, RunJobRequest, RunJobResponse
from node_agent.active_job import ActiveJob, EndOnce, JobEnd, JobExecutionError, WorkspaceError
from node_agent.inference_policy import InferencePolicy
from node_agent.job_cancel import CANCEL_WAIT_SECONDS, start_stopper
from node_agent.job_inference import JobInference
from node_agent.job_limits import JobLimits
from node_agent.job_result import CANCEL_NOTE, SHUTDOWN_NOTE, build_run_job_response, utc_now
from node_agent.job_store import STATE_FINISHED, JobRecord, JobStore
from node_agent.metrics import NodeMetrics
from node_agent.recovery import settle_interrupted_jobs
from node_agent.sandbox_run import SandboxRun
from node_agent.sandbox_spec import sandbox_owner
from node_agent.sba_job import SbaJobs
from node_agent.settings import NodeSettings
from node_agent.warm_pool import WarmPool
from node_agent.workspace import Workspaces

log = logging.getLogger(__name__)


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
        self._workspaces = Workspaces(
            settings.resolved_workspace_root, keep=settings.keep_workspaces, quota_mb=settings.workspace_quota_mb
        )
        self._store = store or JobStore(settings.resolved_state_dir / "jobs")
        self._lock = threading.Lock()
        self._active: dict[str, ActiveJob] = {}  # running: each holds a slot
        self._ending: dict[str, ActiveJob] = {}  # ended and answered, their sandbox still being cleaned up
        self._accepting = True
        self.limits = JobLimits(settings)
        # One registry per executor; the Worker API serves it at /metrics.
        self.metrics = metrics if metrics is not None else NodeMetrics()
        self.metrics.watch_slots(lambda: self.running_jobs, lambda: self._settings.job_slots)
        self.inference = JobInference(settings.resolved_state_dir / "proxy", self.metrics)
        self._sandbox = SandboxRun(
            runtime,
            settings,
            self._lock,
            self.inference,
            SbaJobs(settings.resolved_state_dir / "sba"),
            self.metrics,
            lambda key: self.output_for(key),
        )
        self.warm = (
            WarmPool(runtime, self._workspaces, settings, self.metrics) if isinstance(runtime, WarmingRuntime) else None
        )
        # A job's live output sink by job key (JobReports.output_for for jobs:start; none for jobs:run).
        self.output_for: Callable[[str], OutputSink | None] = lambda _key: None
        settle_interrupted_jobs(
            self._store,
            runtime,
            self._workspaces,
            self.inference.proxy_root,
            retention_seconds=settings.job_result_retention,
            owner=sandbox_owner(settings),
        )

    def set_inference_backend(self, base_url: str | None, models: Sequence[str]) -> None:
        """Give ``use_inference`` jobs a proxy to this loopback Ollama-API URL (``None``: no backend).

        Jobs may name only ``models`` (the first is the default) and get the
        node's option bounds (``node_agent.inference_policy``). The node
        manager calls it once its inference backend has started.
        """
        settings = self._settings
        policy = InferencePolicy(tuple(models), settings.inference_max_ctx, settings.inference_max_predict)
        self.inference.set_backend(base_url, policy)

    @property
    def inference_backend_url(self) -> str | None:
        return self.inference.backend_url

    @property
    def running_jobs(self) -> int:
        with self._lock:
            return len(self._active)

    # -------------------------------------------------------------------- run

    def run(self, request: RunJobRequest) -> RunJobResponse:
        """Run a job once per ``job_id``; return its RunJobResponse (sandbox failures are results).

        Raises ``Unavailable`` when every slot is busy or the node is stopping, and
        ``JobNotStarted`` (``WorkspaceError``, ``JobExecutionError``) when it could not start the job.
        """
        admitted = self._admit(request)
        if isinstance(admitted, RunJobResponse):
            return admitted
        return self._see_through(request, *admitted)

    def start(self, request: RunJobRequest, on_end: Callable[[JobEnd], None]) -> RunJobResponse | None:
        """Take a job and return at once: its stored result, or None while it runs (``jobs:start``).

        A thread runs it (or waits for the run in progress), then calls ``on_end`` with the
        result or the error that kept it from starting. ``Unavailable`` as :meth:`run`.
        """
        admitted = self._admit(request)
        if isinstance(admitted, RunJobResponse):
            return admitted
        end_once = EndOnce(on_end)

        def see_through() -> None:
            try:
                # The end goes out as soon as the container exited (``on_exit``), not after its removal.
                end_once(self._see_through(request, *admitted, early_end=end_once))
            except CynodeError as exc:
                end_once(exc)

        # The run's log records keep the request's ids (a thread starts with an empty context).
        job_context = contextvars.copy_context()
        threading.Thread(
            target=job_context.run, args=(see_through,), name=f"job-{request.job_key}", daemon=True
        ).start()
        return None

    def _admit(self, request: RunJobRequest) -> RunJobResponse | tuple[ActiveJob, bool]:
        """The stored result of a job, or its entry among the running and whether this call runs it."""
        key = request.job_key
        with self._lock:
            job = self._active.get(key)
            if job is not None:
                return job, False
            record = self._store.get_finished(key)
            if record is not None and record.result is None:  # its cancel came first: it never starts
                record = self._store.close_unstarted(key, request.task_id, request.job_id)
            if record is not None and record.result is not None:
                log.info("job %s: repeated dispatch answered from the stored result", key)
                return record.result
            if not self._accepting:
                raise Unavailable("Node is shutting down", retry_after=1)
            if len(self._active) >= self._settings.job_slots:
                raise Unavailable("No free job slot on this node", retry_after=1)
            job = self._active[key] = ActiveJob(task_id=request.task_id)
            return job, True

    def _see_through(
        self, request: RunJobRequest, job: ActiveJob, owner: bool, early_end: Callable[[JobEnd], None] | None = None
    ) -> RunJobResponse:
        """Run an admitted job (``owner``), or wait for the run in progress; its result or its error.

        With ``early_end``, an owner ends the job as soon as its container exited: it frees the slot,
        answers waiters and calls ``early_end`` with the result while the runtime still cleans up.
        """
        key = request.job_key
        if not owner:
            log.info("job %s: repeated dispatch waits for the run in progress", key)
            job.done.wait()
            if job.error is not None:
                raise job.error
            assert job.result is not None
            return job.result
        try:
            job.result = self._execute(request, job, early_end)
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
            self._release(key, job)
            job.sandbox_ended.set()  # in case the run never got that far: no stopper waits forever
            with self._lock:
                self._ending.pop(key, None)
            job.closed.set()

    def _release(self, key: str, job: ActiveJob) -> None:
        """Free the job's slot and answer its waiters (once its result or error is set); idempotent."""
        with self._lock:
            if self._active.get(key) is job:
                del self._active[key]
                self._ending[key] = job  # until its cleanup is over (wait_idle)
        job.done.set()

    def _execute(
        self, request: RunJobRequest, job: ActiveJob, early_end: Callable[[JobEnd], None] | None = None
    ) -> RunJobResponse:
        key = request.job_key
        timeout = self.limits.effective_timeout(request.sandbox.timeout_seconds)
        try:
            self._store.mark_running(key, request.task_id)
        except OSError as exc:
            # Without the marker a crash could lead to a second run; refuse while nothing ran.
            log.error("job %s: cannot record the job start: %s", key, exc)
            raise JobExecutionError("Job execution failed") from exc
        warm = self.warm.take(request) if self.warm is not None else None
        try:
            workspace = warm.workspace if warm is not None else self._workspaces.create(key)
        except OSError as exc:
            log.error("job %s: workspace creation failed: %s", key, exc)
            self._store.discard(key)
            raise WorkspaceError("Workspace creation failed") from exc
        started = utc_now()
        ended: list[RunJobResponse] = []  # the job's end, once: when its container exited, or after the run

        def end(outcome: SandboxOutcome) -> RunJobResponse:
            if not ended:
                ended.append(self._record_end(request, job, outcome, started))
            return ended[0]

        def exited(outcome: SandboxOutcome) -> None:
            assert early_end is not None
            job.result = end(outcome)
            self._release(key, job)
            early_end(job.result)

        try:
            outcome = self._sandbox.run(request, job, workspace, timeout, exited if early_end else None, warm)
            return end(outcome)
        finally:
            self._workspaces.release(workspace)

    def _record_end(
        self, request: RunJobRequest, job: ActiveJob, outcome: SandboxOutcome, started: dt.datetime
    ) -> RunJobResponse:
        """The job's response, saved in the job store (a repeated dispatch is answered from it), logged and counted."""
        key, ended = request.job_key, utc_now()
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
        if job.extras:
            result = dataclasses.replace(result, extras=dict(job.extras))
        self._store.save_finished(JobRecord(key, request.task_id, STATE_FINISHED, canceled=canceled, result=result))
        seconds = (ended - started).total_seconds()
        self.metrics.job_finished("canceled" if canceled else str(result.status), seconds)
        log.info(
            "job %s (task %s): %s, exit code %s, %.1f s", key, request.task_id, result.status, result.exit_code, seconds
        )
        return result

    # ----------------------------------------------------------------- cancel

    def cancel(self, job_id: str, *, note: str = CANCEL_NOTE) -> CancelResponse:
        """Stop a job (``job_id`` a UUID); idempotent.

        ``canceled`` is true when the job was (or had already been) stopped
        by a cancel, false when it had finished on its own first. Raises
        ``NotFound`` for a job the node has not run, which then never
        starts here. ``note`` ends the canceled job's ``stderr``. Waits up
        to ``CANCEL_WAIT_SECONDS`` for the container to be stopped.
        """
        key = job_id.lower()
        stopper, record = None, None
        with self._lock:  # with run()'s check: a job is either running here, or its cancel is kept
            job = self._active.get(key)
            if job is None:
                record = self._store.keep_cancel(key)
            else:
                if not job.cancel_requested:
                    job.cancel_requested, job.cancel_note = True, note
                if job.handed_to_runtime and job.stopper is None and not job.sandbox_ended.is_set():
                    job.stopper = start_stopper(self._runtime, self._lock, key, job)
                stopper = job.stopper
        if record is not None:
            if record.result is None:
                raise NotFound("Job not found")
            return CancelResponse(job_id, record.canceled)
        log.info("job %s: cancel requested", key)
        if stopper is not None:
            stopper.join(CANCEL_WAIT_SECONDS)
        return CancelResponse(job_id, True)

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
                jobs = [*self._active.values(), *self._ending.values()]
            if not jobs:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            jobs[0].closed.wait(min(remaining, 0.5))
