"""``PodmanRuntime``: one hardened container per job through podman-py on the REST socket.

Per job: create, init, start, wait, remove — five calls on one shared client.
``wait`` polls every 10 ms instead of Podman's 250 ms default, and its HTTP
read timeout is the job timeout, so no timer thread is needed. The output is
read from its size-capped k8s-file log, opened between init and start (see
``output``): once the container stopped, and, when the spec asks for it
(``on_output``), every 150 ms while it runs by a thread of the job's. The
outcome goes to ``on_exit`` before the removal, so the node can end the job
without waiting for it.

Warm containers (``warm``, the ``WarmingRuntime`` capability) are made
ahead with the same options and handed a job through a pipe; from the
job's start on they are watched and removed as cold ones.

The runtime keeps no record of cancellation: ``cancel`` kills the job's
container, found by its name, if it is running, and the node (the one
owner of a job's cancellation) calls it again while it is not.
"""

from __future__ import annotations

import datetime as dt
import tempfile
import threading
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import BinaryIO

from podman import PodmanClient
from podman.domain.containers import Container
from podman.errors import APIError, NotFound

from cynode_core.contract import (
    LeftoverJob,
    RuntimeUnavailable,
    SandboxOutcome,
    SandboxSpec,
    WarmSandbox,
    WarmStartFailed,
)
from cynode_podman import warm
from cynode_podman.calls import (
    EXIT_RUNTIME_ERROR,
    explain,
    kill,
    log_path,
    now,
    remove,
    runtime_failure,
    tell_exit,
)
from cynode_podman.container_config import LABEL_JOB_ID, LABEL_NODE, LABEL_TASK_ID, container_name, create_or_fail
from cynode_podman.exit_watch import inspect_started, wait_for_exit
from cynode_podman.output import CappedBuffer, LogFollower, LogTail, open_log, read_output
from cynode_podman.service import PodmanService

# A job's run between the id guard and the removal: (client, started_at, containers to remove) -> outcome.
_Body = Callable[[PodmanClient, dt.datetime, list[Container]], SandboxOutcome]


class PodmanRuntime:
    """The ``podman`` sandbox runtime. Thread-safe: several jobs may run at once."""

    name = "podman"

    def __init__(
        self, socket_url: str | None = None, state_dir: str | Path | None = None, *, wait_interval: str = "10ms"
    ) -> None:
        """Use the Podman service at ``socket_url``, or start a private one under ``state_dir``.

        Nothing is started here: the service starts on first use, so building
        the runtime never fails and ``check`` reports what is wrong.
        """
        if socket_url is None and state_dir is None:
            raise ValueError("PodmanRuntime needs a socket_url or a state_dir")
        self._socket_url = socket_url
        self._state_dir = Path(state_dir) if state_dir is not None else None
        self._wait_interval = wait_interval
        self._service: PodmanService | None = None
        self._client: PodmanClient | None = None
        self._lock = threading.Lock()  # guards _in_run and the lazy start
        # Ids of the jobs inside run(): a stale container of one is replaced, a running one never.
        self._in_run: set[str] = set()
        self._waiting: dict[str, Container] = {}  # warm containers by ref, as inspected once started
        self._warm_jobs: dict[str, Container] = {}  # running jobs' warm containers, until they have its name
        self._version: str | None = None

    @classmethod
    def from_options(cls, options: Mapping[str, object]) -> PodmanRuntime:
        """Build from the node's runtime options (``socket_url``, ``state_dir``)."""
        socket_url = options.get("socket_url")
        state_dir = options.get("state_dir")
        return cls(socket_url=str(socket_url) if socket_url else None, state_dir=str(state_dir) if state_dir else None)

    @property
    def service(self) -> PodmanService | None:
        """The private service, when this runtime started one."""
        return self._service

    @property
    def client(self) -> PodmanClient:
        """The shared podman-py client; starts the private service on first use.

        :raises RuntimeUnavailable: the service cannot be started.
        """
        with self._lock:
            if self._client is None:
                url = self._socket_url
                if url is None:
                    assert self._state_dir is not None
                    self._service = PodmanService(self._state_dir / "podman")
                    url = self._service.start()
                # Each running job holds a connection in wait(); keep a pool of them.
                self._client = PodmanClient(base_url=url, max_pool_size=64)
                if url.startswith(("unix:", "http+unix:")):
                    # No proxy or netrc lookup in the environment for a local socket: requests makes
                    # one per call otherwise, a tenth of the node's CPU for a short job.
                    self._client.api.trust_env = False
            return self._client

    def version(self) -> str:
        """Podman's version, e.g. ``4.3.1``."""
        if self._version is None:
            try:
                self._version = str(self.client.version()["Version"])
            except (APIError, KeyError) as exc:
                raise RuntimeUnavailable(f"podman service at {self._url()} does not answer: {exc}") from exc
        return self._version

    def check(self, image: str) -> None:
        """Raise ``RuntimeUnavailable`` unless the service answers and ``image`` runs ``true``."""
        client = self.client
        try:
            if not client.ping():
                raise RuntimeUnavailable(f"podman service at {self._url()} does not answer /_ping")
            present = client.images.exists(image)
        except APIError as exc:
            raise RuntimeUnavailable(f"podman service at {self._url()} is unreachable: {exc}") from exc
        if not present:
            raise RuntimeUnavailable(
                f"sandbox image {image!r} is not in Podman's image store "
                "(no registry is reachable; build it with scripts/build-sandbox-image)"
            )
        with tempfile.TemporaryDirectory(prefix="cynode-check-") as workspace:
            outcome = self.run(
                SandboxSpec(
                    job_id=f"check-{uuid.uuid4()}",
                    task_id="check",
                    image=image,
                    command=["true"],
                    env={},
                    workspace_dir=workspace,
                    timeout_seconds=60,
                    max_output_bytes=4096,
                )
            )
        if outcome.status != "completed":
            message = outcome.stderr.decode("utf-8", "replace").strip()
            raise RuntimeUnavailable(f"podman cannot run `true` in {image!r}: {message}")

    def run(self, spec: SandboxSpec) -> SandboxOutcome:
        """Run one job to its end, its timeout or its cancellation; never raises for job failures."""
        return self._run(spec, lambda client, started_at, held: self._cold(client, spec, started_at, held))

    def prestart(self, template: SandboxSpec) -> WarmSandbox:
        """A container for ``template`` started ahead, waiting for one job (``warm``)."""
        sandbox, container = warm.start_warm(self.client, template)
        self._waiting[sandbox.ref] = container
        return sandbox

    def run_warm(self, sandbox: WarmSandbox, spec: SandboxSpec) -> SandboxOutcome:
        """Run ``spec`` in the warm container ``sandbox``; ``WarmStartFailed`` before the job started."""
        return self._run(spec, lambda client, started_at, held: self._warm(client, sandbox, spec, started_at, held))

    def discard(self, sandbox: WarmSandbox) -> None:
        """Remove a warm container that gets no job."""
        try:
            client = self.client
        except RuntimeUnavailable:
            return
        self._waiting.pop(sandbox.ref, None)
        warm.discard(client, sandbox)

    def _run(self, spec: SandboxSpec, body: _Body) -> SandboxOutcome:
        """``body`` once per job id at a time; its container (``held``) removed after, whatever happened."""
        started_at = now()
        with self._lock:
            if spec.job_id in self._in_run:  # the Worker API is idempotent; never run one job twice at once
                return runtime_failure(-1, f"job {spec.job_id} is already running", started_at)
            self._in_run.add(spec.job_id)
        held: list[Container] = []
        try:
            outcome = body(self.client, started_at, held)
            tell_exit(spec, outcome)
            return outcome
        except WarmStartFailed:
            raise
        except Exception as exc:  # noqa: BLE001 - any runtime failure must become a failed job
            return runtime_failure(-1, f"podman service at {self._url()}: {exc}", started_at)
        finally:
            for container in held:
                remove(container)
            with self._lock:
                self._in_run.discard(spec.job_id)

    def cancel(self, job_id: str) -> bool:
        """SIGKILL the job's container if it is running; True when one was killed (``run`` then ends failed).

        Stateless: a container not created or not started yet is not killed
        (False), and nothing is remembered; the caller asks again.
        """
        with self._lock:
            known = self._warm_jobs.get(job_id)
        try:
            (known or self.client.containers.get(container_name(job_id))).kill(signal="SIGKILL")
        except APIError:  # no such container (NotFound), or it is not running
            return False
        return True

    def sweep(self, owner: str) -> list[LeftoverJob]:
        """Kill and remove every container labelled ``cynodeai.node=<owner>``, in any state; return their jobs.

        Podman's label filter finds them, not this object's memory: a node
        calls it at start for what its killed predecessor left. The kill
        comes first, since a removal would first wait out the stop timeout
        of a job that ignores SIGTERM.
        """
        if not owner:
            raise ValueError("a sweep needs the owner its containers are labelled with")
        try:
            # One "key=value" string: podman-py passes a list here on as is, which matches nothing.
            found = self.client.containers.list(all=True, filters={"label": f"{LABEL_NODE}={owner}"})
        except APIError as exc:
            raise RuntimeUnavailable(f"podman service at {self._url()} cannot list containers: {exc}") from exc
        swept, failed = [], []
        for container in found:
            labels = container.labels or {}
            kill(container)
            try:
                container.remove(force=True)
            except NotFound:
                pass
            except APIError as exc:
                failed.append(f"{container.name}: {explain(exc)}")
                continue
            job_id = labels.get(LABEL_JOB_ID) or warm.claimed_job(labels, container.name or "")
            if job_id:  # a warm container still waiting has none
                swept.append(LeftoverJob(job_id, labels.get(LABEL_TASK_ID, "")))
        if failed:
            raise RuntimeUnavailable(
                f"podman could not remove {len(failed)} leftover container(s): {'; '.join(failed)}"
            )
        return swept

    def close(self) -> None:
        """Close the client and stop the private service, if any. Idempotent."""
        with self._lock:
            client, self._client = self._client, None
            service, self._service = self._service, None
        if client is not None:
            client.close()
        if service is not None:
            service.stop()

    # -- one job ------------------------------------------------------------

    def _cold(
        self, client: PodmanClient, spec: SandboxSpec, started_at: dt.datetime, held: list[Container]
    ) -> SandboxOutcome:
        """Create and start the job's container, wait for its end (or timeout) and read its capped output."""
        created = create_or_fail(client, spec, started_at)
        if isinstance(created, SandboxOutcome):
            return created
        held.append(created)
        log: BinaryIO | None = None
        try:
            try:
                # init runs conmon, which opens the log: it is opened here before the job can write to it.
                created.init()
                log = open_log(log_path(created))
                created.start()
            except APIError as exc:
                message = explain(exc)
                code = 127 if "not found" in message else 126 if "permission denied" in message else EXIT_RUNTIME_ERROR
                return runtime_failure(code, f"cannot start the container: {message}", started_at)
            inspect_started(created)
            return self._collect(client, created, spec, started_at, log)
        finally:
            if log is not None:
                log.close()

    def _warm(
        self,
        client: PodmanClient,
        sandbox: WarmSandbox,
        spec: SandboxSpec,
        started_at: dt.datetime,
        held: list[Container],
    ) -> SandboxOutcome:
        """Give the job to the waiting container, then watch it as a cold one."""
        container = warm.claim(client, sandbox, spec, self._waiting.pop(sandbox.ref, None))
        held.append(container)
        log = open_log(log_path(container))  # the shell printed nothing: the log is the job's from its start
        try:
            warm.go(sandbox)
            with self._lock:
                self._warm_jobs[spec.job_id] = container
            try:
                warm.take_name(client, container, spec.job_id)
                return self._collect(client, container, spec, started_at, log)
            finally:
                with self._lock:
                    self._warm_jobs.pop(spec.job_id, None)
        finally:
            if log is not None:
                log.close()

    def _collect(
        self,
        client: PodmanClient,
        container: Container,
        spec: SandboxSpec,
        started_at: dt.datetime,
        log: BinaryIO | None,
    ) -> SandboxOutcome:
        """Wait for the started job's end (or timeout) and read its capped output."""
        container_started_at = now()
        follower: LogFollower | None = None
        tail = None
        try:
            if log is not None:
                tail = LogTail(log, CappedBuffer(spec.max_output_bytes), CappedBuffer(spec.max_output_bytes))
                if spec.on_output is not None:
                    follower = LogFollower(tail, spec.on_output)
            exit_code, timed_out = wait_for_exit(container, spec.timeout_seconds, self._wait_interval)
            if follower is not None:
                follower.finish()
            stdout, stderr = read_output(client, container, tail, spec.max_output_bytes)
        finally:
            if follower is not None:
                follower.stop()
        return SandboxOutcome(
            status="timeout" if timed_out else "completed" if exit_code == 0 else "failed",
            exit_code=-1 if timed_out else exit_code,
            stdout=bytes(stdout.data),
            stderr=bytes(stderr.data),
            stdout_truncated=stdout.truncated,
            stderr_truncated=stderr.truncated,
            started_at=started_at,
            ended_at=now(),
            container_started_at=container_started_at,
        )

    def _url(self) -> str:
        return self._socket_url or (self._service.url if self._service else "<not started>")
