"""The value types the hooks pass, and the protocols runtime and inference plugins implement.

Plain dataclasses and ``typing.Protocol`` s: no web framework, no database.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class Identity:
    """Who a successful authentication says the caller is.

    ``user_id`` is set when the identity is a row already in ``users`` (the
    local accounts plugin). An external provider leaves it ``None`` and sets
    ``external_source`` / ``external_id``; core then finds or creates the
    matching ``users`` row on first login.
    """

    handle: str
    user_id: str | None = None
    email: str | None = None
    external_source: str | None = None
    external_id: str | None = None


@dataclass(frozen=True)
class JobInfo:
    """What the scheduler knows about the job it places."""

    job_id: str
    task_id: str
    use_inference: bool = False
    attempt: int = 1


@dataclass(frozen=True)
class InferenceInfo:
    """A chat request the orchestrator sends to a node's model, as the scheduler sees it.

    ``in_flight`` counts, per node id, the chat calls this orchestrator has
    open on that node now; ``context_chars`` is the size of the messages sent.
    """

    model: str
    user_id: str
    context_chars: int = 0
    in_flight: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class NodeCandidate:
    """A dispatchable node as the scheduler sees it."""

    node_id: str
    node_slug: str
    max_concurrency: int
    running_jobs: int
    capability: Mapping[str, object] = field(default_factory=dict)

    @property
    def free_slots(self) -> int:
        return max(self.max_concurrency - self.running_jobs, 0)


@dataclass(frozen=True)
class TaskEvent:
    """A task that reached a terminal status."""

    task_id: str
    status: str
    created_by: str | None


# ``on_output(stream, data)`` of a SandboxSpec: a job's output as it is printed.
OutputSink = Callable[[str, bytes], None]
# ``on_exit(outcome)`` of a SandboxSpec: a job's outcome as soon as its container has exited.
ExitSink = Callable[["SandboxOutcome"], None]


@dataclass(frozen=True)
class Mount:
    """A host directory bind-mounted into a sandbox."""

    source: str
    target: str
    read_only: bool = True


@dataclass(frozen=True)
class SandboxSpec:
    """One job's container, fully resolved by the node before it runs.

    ``env`` already holds the ``CYNODE_*`` variables the node injects;
    ``workspace_dir`` is the host directory to mount at ``/workspace``.
    A value of ``None`` for a limit means "no limit". ``owner`` marks the
    container as this node's (the node's state directory): a runtime with
    ``sweep`` (:class:`SweepingRuntime`) labels the container with it, so the
    node, started again, finds what it left; an empty owner marks nothing.

    ``on_output``, when set, asks for the job's output while it runs: the
    runtime calls it with ``(stream, data)`` (``"stdout"`` or ``"stderr"``,
    the bytes printed since its last call, in order per stream) from a
    thread of its own, until ``run`` returns; the bytes given over a run
    are the start of the outcome's ``stdout`` and ``stderr`` (the node
    sends the rest from the outcome). A call may block: the runtime then
    reads the job's output later, never past its caps. A runtime that cannot
    follow output ignores it; the node then sends the output when the job
    ended (docs/plugins.md).

    ``on_exit``, when set, is called once, in ``run``'s thread, with the
    outcome as soon as the container has exited and its output is read,
    before the runtime removes the container; ``run`` then returns that
    same outcome. The node ends the job there, so the removal is not part
    of the job's latency. A runtime that does not call it is fine: the node
    ends the job when ``run`` returns.
    """

    job_id: str
    task_id: str
    image: str
    command: Sequence[str]
    env: Mapping[str, str]
    workspace_dir: str
    timeout_seconds: int
    max_output_bytes: int
    network_policy: str = "restricted"
    user: str = "65534:65534"
    memory_limit: str | None = "512m"
    pids_limit: int | None = 256
    cpus: float | None = None
    read_only_root: bool = True
    mounts: Sequence[Mount] = ()
    owner: str = ""
    on_output: OutputSink | None = field(default=None, compare=False, repr=False)
    on_exit: ExitSink | None = field(default=None, compare=False, repr=False)


@dataclass
class SandboxOutcome:
    """What a runtime reports once the container has exited (``on_exit``) and after it is gone (``run``).

    ``status`` is ``completed`` (exit 0), ``failed`` (non-zero exit or the
    runtime could not run it) or ``timeout``; ``exit_code`` is -1 where no
    exit code exists. Output is already capped at the spec's
    ``max_output_bytes`` with the matching ``truncated`` flag set.
    ``container_started_at`` is when the container actually started, if the
    runtime can tell (the node's sandbox start-time metric); ``None`` otherwise.
    """

    status: str
    exit_code: int
    stdout: bytes = b""
    stderr: bytes = b""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    started_at: dt.datetime | None = None
    ended_at: dt.datetime | None = None
    container_started_at: dt.datetime | None = None


@runtime_checkable
class SandboxRuntime(Protocol):
    """A container runtime a node runs jobs with."""

    name: str

    def check(self, image: str) -> None:
        """Raise ``RuntimeUnavailable`` unless ``image`` can run now."""

    def run(self, spec: SandboxSpec) -> SandboxOutcome:
        """Run one job to its end (or its timeout) and remove its container."""

    def cancel(self, job_id: str) -> bool:
        """Stop the job's container if it runs; True when one was stopped."""

    def version(self) -> str:
        """The runtime's version string, for the capability report."""

    def close(self) -> None:
        """Release what the runtime holds (sockets, service processes)."""


@dataclass(frozen=True)
class LeftoverJob:
    """A job whose container a sweep removed, as the container's labels name it."""

    job_id: str
    task_id: str


@runtime_checkable
class SweepingRuntime(SandboxRuntime, Protocol):
    """A sandbox runtime that can also remove what an earlier process of the node left (optional).

    A node agent that was killed leaves its jobs' containers running. At
    start the node calls ``sweep`` with its ``owner`` before it takes any job;
    a runtime without ``sweep`` gets ``cancel`` for the jobs the node's own
    records name, and nothing else is found.
    """

    def sweep(self, owner: str) -> list[LeftoverJob]:
        """Stop and remove every container marked with ``owner``, in any state; return their jobs.

        A warm container (``WarmingRuntime``) still waiting has no job and is not listed; one that took
        a job may be listed with an empty ``task_id``.

        Asks the container service, never this object's memory: the
        containers were made by another process. Containers of other owners,
        or unmarked ones, are left alone. Raise ``ValueError`` for an empty
        ``owner`` and ``RuntimeUnavailable`` when a container could not be
        removed (after trying the others).
        """


@runtime_checkable
class InferenceBackend(Protocol):
    """A node-local model server that speaks Ollama's HTTP API."""

    name: str

    def start(self) -> None:
        """Start or reach the backend; raise ``InferenceUnavailable`` if not."""

    @property
    def base_url(self) -> str:
        """Loopback URL of the Ollama-compatible API (no trailing slash)."""

    def models(self) -> list[str]:
        """Names of the models the backend can answer with now."""

    def stop(self) -> None:
        """Stop what ``start`` started; leave an external server alone."""


def normalize_model_name(name: str) -> str:
    """Ollama's comparison form of a model name, for backends and the node alike.

    Case-insensitive, the default registry and the tag ``latest`` implied:
    ``Gemma3`` and ``registry.ollama.ai/library/gemma3:latest`` are one model.
    """
    text = name.strip().lower()
    for prefix in ("registry.ollama.ai/library/", "registry.ollama.ai/", "library/"):
        if text.startswith(prefix):
            text = text[len(prefix) :]
            break
    if ":" not in text.rsplit("/", 1)[-1]:
        text += ":latest"
    return text


def is_loopback_host(host: str) -> bool:
    """``localhost`` or a loopback IP address: where a backend's ``base_url`` must point."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


RuntimeFactory = Callable[[Mapping[str, object]], SandboxRuntime]
BackendFactory = Callable[[Mapping[str, object]], InferenceBackend]
RegisterRuntime = Callable[[str, RuntimeFactory], None]
RegisterBackend = Callable[[str, BackendFactory], None]
