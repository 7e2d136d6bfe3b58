"""One job's run in its sandbox: its proxies, an SBA job's directory, the runtime call, the node's notes.

Split out of ``executor``, which decides when a job runs and what its end
is; this module starts the job's proxies (inference, ``job_inference``; MCP,
``mcp_proxy``, for a job with an ``mcp`` grant), makes the ``SandboxSpec``
(``sandbox_spec``), calls the runtime once, and gives back the outcome with what the node adds: the
inference proxy's note, a cancel's stop note, and, for an SBA job
(``sba_job``), the status its ``result.json`` decides (its ``sba_result``
kept in ``ActiveJob.extras``). ``on_exit`` gets that outcome as soon as the
container exited, when the runtime tells.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from cynode_core.contract import (
    OutputSink,
    SandboxOutcome,
    SandboxRuntime,
    SandboxSpec,
    WarmingRuntime,
    WarmStartFailed,
    warm_key,
)
from cynode_core.contract.job import McpGrant, RunJobRequest, RunStatus
from node_agent.active_job import ActiveJob
from node_agent.job_cancel import stopped_by_cancel
from node_agent.job_files import collect_outputs, outputs_dir, prepare_outputs, write_inputs
from node_agent.job_inference import JobInference, proxy_failure
from node_agent.job_result import stopped_note, utc_now
from node_agent.mcp_proxy import McpProxy
from node_agent.metrics import NodeMetrics
from node_agent.sandbox_spec import build_sandbox_spec
from node_agent.sba_job import InvalidSbaJob, SbaJob, SbaJobs
from node_agent.settings import NodeSettings
from node_agent.unix_proxy import ProxyError, UnixProxy
from node_agent.warm_pool import WarmEntry

log = logging.getLogger(__name__)


@dataclasses.dataclass
class SandboxRun:
    """What a run needs of the node: its runtime, settings, the executor's lock, the proxies and SBA jobs."""

    runtime: SandboxRuntime
    settings: NodeSettings
    lock: threading.Lock
    inference: JobInference
    sba: SbaJobs
    metrics: NodeMetrics
    output_for: Callable[[str], OutputSink | None]

    def run(
        self,
        request: RunJobRequest,
        job: ActiveJob,
        workspace: Path,
        timeout: int,
        on_exit: Callable[[SandboxOutcome], None] | None = None,
        warm: WarmEntry | None = None,
    ) -> SandboxOutcome:
        """The job's sandbox outcome, with the node's notes; ``on_exit`` gets it once the container exited.

        ``on_exit`` may not be called (a runtime that does not tell, or no container ran): the caller
        then ends the job with what this returns. ``warm``, taken from the pool with ``workspace`` as its
        workspace, runs the job if its spec fits and is removed otherwise.
        """
        try:
            return self._run(request, job, workspace, timeout, on_exit, warm)
        finally:
            if warm is not None and not job.handed_to_runtime:
                self._discard(warm)

    def _run(
        self,
        request: RunJobRequest,
        job: ActiveJob,
        workspace: Path,
        timeout: int,
        on_exit: Callable[[SandboxOutcome], None] | None,
        warm: WarmEntry | None,
    ) -> SandboxOutcome:
        key = request.job_key
        with self.lock:
            if job.cancel_requested:
                return SandboxOutcome(status=RunStatus.FAILED, exit_code=-1)
        proxies: list[UnixProxy] = []
        note = b""
        try:
            sba = self.sba.prepare(key, request.sandbox.job_spec_json) if request.sandbox.job_spec_json else None
        except InvalidSbaJob as exc:
            return exc.outcome()

        def outputs() -> Path | None:
            return sba.job_dir / "artifacts" if sba is not None else outputs_dir(workspace)

        def exited(outcome: SandboxOutcome) -> None:
            assert on_exit is not None
            job.sandbox_ended.set()  # no container left to stop
            on_exit(self._noted(job, outcome, note, sba, outputs()))

        try:
            if sba is None:
                prepare_outputs(workspace)
            refused = write_inputs(workspace, request.sandbox.inputs)
            if refused is not None:
                return refused
            if request.sandbox.use_inference:
                inference = self.inference.for_job(key)
                if inference.failure is not None:
                    return inference.failure
                note = inference.stderr_note
                if inference.proxy is not None:
                    proxies.append(inference.proxy)
            if request.mcp is not None:
                mcp = self._mcp_proxy(key, request.mcp)
                if isinstance(mcp, SandboxOutcome):
                    return mcp
                proxies.append(mcp)
            spec = build_sandbox_spec(
                request,
                self.settings,
                workspace=workspace,
                timeout=timeout,
                proxies=proxies,
                on_output=self.output_for(key),
                on_exit=exited if on_exit is not None else None,
                sba=sba,
            )
            with self.lock:
                if job.cancel_requested:  # came while the proxy started
                    return SandboxOutcome(status=RunStatus.FAILED, exit_code=-1)
                job.handed_to_runtime = True
            log.info(
                "job %s (task %s): starting in %s, timeout %d s%s",
                key,
                request.task_id,
                spec.image,
                timeout,
                "".join(f" with an {proxy.kind} proxy" for proxy in proxies),
            )
            called_at, clock = utc_now(), time.perf_counter()
            try:
                outcome = self._start(spec, warm)
            except Exception as exc:  # noqa: BLE001 - a failed job, answered 200 (wire_contract.md#worker-run-job-response)
                log.warning("job %s: runtime error: %s", key, exc)
                outcome = SandboxOutcome(status=RunStatus.FAILED, exit_code=-1, stderr=f"runtime error: {exc}".encode())
            finally:
                job.sandbox_ended.set()
            self.metrics.sandbox_ran(time.perf_counter() - clock, called_at, outcome)
            return self._noted(job, outcome, note, sba, outputs())
        finally:
            for proxy in reversed(proxies):
                proxy.close()
            if sba is not None:
                sba.remove()

    def _start(self, spec: SandboxSpec, warm: WarmEntry | None) -> SandboxOutcome:
        """Run ``spec`` in the warm container when it fits it (and it still waits), else in a new one."""
        if warm is not None and warm_key(spec) == warm.sandbox.key:
            assert isinstance(self.runtime, WarmingRuntime)
            try:
                outcome = self.runtime.run_warm(warm.sandbox, spec)
            except WarmStartFailed as exc:
                log.warning("job %s: %s; starting it cold", spec.job_id, exc)
            else:
                self.metrics.sandbox_starts.labels("warm").inc()
                return outcome
        elif warm is not None:
            self._discard(warm)
        self.metrics.sandbox_starts.labels("cold").inc()
        return self.runtime.run(spec)

    def _discard(self, warm: WarmEntry) -> None:
        if isinstance(self.runtime, WarmingRuntime):
            self.runtime.discard(warm.sandbox)

    def _mcp_proxy(self, key: str, grant: McpGrant) -> McpProxy | SandboxOutcome:
        """Job ``key``'s MCP proxy, started and healthy; a failed outcome when it is not (mcp_contract.md 2.3)."""
        try:
            proxy = McpProxy(self.inference.proxy_root / key, self.settings.orchestrator_url, grant, name=key)
            proxy.start()
        except Exception as exc:  # noqa: BLE001 - a failed job, answered 200 like the inference proxy's
            log.warning("job %s: MCP proxy did not start: %s", key, exc)
            return proxy_failure(f"MCP proxy start: {exc}\n")
        try:
            proxy.wait_ready(self.inference.ready_timeout)
        except ProxyError as exc:
            proxy.close()
            log.warning("job %s: MCP proxy not healthy: %s", key, exc)
            return SandboxOutcome(
                status=RunStatus.FAILED, exit_code=-1, stderr=f"MCP proxy readiness: {exc}\n".encode()
            )
        return proxy

    def _noted(
        self, job: ActiveJob, outcome: SandboxOutcome, note: bytes, sba: SbaJob | None, outputs: Path | None
    ) -> SandboxOutcome:
        """``outcome`` with the node's notes before its stderr (the inference proxy's, a cancel's stop), an
        SBA job's result deciding its status (kept in ``job.extras`` as ``sba_result``), and the files the job
        left for the orchestrator (``job.extras["artifacts"]``)."""
        found = collect_outputs(outputs)
        if found:
            job.extras["artifacts"] = [item.to_json() for item in found]
        if sba is not None:
            outcome, sba_result = sba.conclude(outcome)
            if sba_result is not None:
                job.extras["sba_result"] = sba_result
        stderr = outcome.stderr
        if stopped_by_cancel(self.lock, job) and outcome.status != RunStatus.TIMEOUT:
            stderr = stopped_note(outcome.exit_code) + stderr
        return dataclasses.replace(outcome, stderr=note + stderr)
