"""The node agent's Prometheus metrics, served at ``GET /metrics`` on the Worker API.

One ``CollectorRegistry`` per executor (the Worker API app serves it), never
the library's global one, so several nodes in one test process do not
collide. ``/metrics`` needs no token, like ``/healthz``: it holds counts,
durations, job outcomes and URL rules only, no job, task or token value.

The inference numbers come from the per-job proxies: request count and
latency by endpoint, and the tokens the backend reports in its final JSON
(``prompt_eval_count``, ``eval_count``), read from the last NDJSON line of a
stream or the single JSON body as it passes, without holding the stream back.
The orchestrator's ``inference:chat`` calls (``inference_chat``) are counted
by status and outcome, and timed.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from cynode_core.contract import SandboxOutcome
from cynode_core.http_metrics import HttpMetrics

log = logging.getLogger(__name__)

JOB_OUTCOMES = ("completed", "failed", "timeout", "canceled", "error")
JOB_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
START_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)
INFERENCE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
# inference:chat calls last up to CYNODE_NODE_INFERENCE_TIMEOUT_SECONDS (300 by default).
CHAT_BUCKETS = (*INFERENCE_BUCKETS, 300.0, 600.0)
# The last NDJSON line (or the whole body) kept to read the token counts; a longer one is not counted.
TOKEN_TAIL_LIMIT = 1024 * 1024


class SlotsCollector(Collector):
    """``cynode_node_running_jobs`` and ``cynode_node_free_slots``, read from the executor at scrape time."""

    def __init__(self, running: Callable[[], int], slots: Callable[[], int]):
        self._running = running
        self._slots = slots

    def collect(self) -> Iterable[Metric]:
        running = self._running()
        yield GaugeMetricFamily("cynode_node_running_jobs", "Jobs running on this node now", value=running)
        free = max(self._slots() - running, 0)
        yield GaugeMetricFamily("cynode_node_free_slots", "Job slots free now (more jobs answer 503)", value=free)


class _GaugeCollector(Collector):
    """One gauge whose value is read at scrape time."""

    def __init__(self, name: str, documentation: str, value: Callable[[], int]):
        self._name, self._documentation, self._value = name, documentation, value

    def collect(self) -> Iterable[Metric]:
        yield GaugeMetricFamily(self._name, self._documentation, value=self._value())


class NodeMetrics:
    """Job, sandbox, inference and HTTP metrics of one node agent."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.http = HttpMetrics(self.registry, "cynode_node", logging.getLogger("node_agent.access"))
        self.jobs = Counter(
            "cynode_node_jobs",
            "Jobs this node ran, by outcome (completed, failed, timeout: the job's status; "
            "canceled: stopped by a cancel; error: the node could not run it, answered 500)",
            ("outcome",),
            registry=self.registry,
        )
        self.job_duration = Histogram(
            "cynode_node_job_duration_seconds",
            "Job run time on the node (workspace ready to sandbox end), by outcome",
            ("outcome",),
            registry=self.registry,
            buckets=JOB_BUCKETS,
        )
        self.sandbox_run = Histogram(
            "cynode_node_sandbox_run_seconds",
            "Duration of the sandbox runtime's run call (create, start, wait, output, remove)",
            registry=self.registry,
            buckets=JOB_BUCKETS,
        )
        self.sandbox_start = Histogram(
            "cynode_node_sandbox_start_seconds",
            "Time from the runtime's run call to the container's start, for runtimes that report it",
            registry=self.registry,
            buckets=START_BUCKETS,
        )
        self.inference_requests = Counter(
            "cynode_node_inference_requests",
            "Requests through the per-job inference proxies, by endpoint and status",
            ("endpoint", "status"),
            registry=self.registry,
        )
        self.inference_latency = Histogram(
            "cynode_node_inference_request_duration_seconds",
            "Inference proxy request time, request read to last byte relayed, by endpoint",
            ("endpoint",),
            registry=self.registry,
            buckets=INFERENCE_BUCKETS,
        )
        self.inference_tokens = Counter(
            "cynode_node_inference_tokens",
            "Tokens the inference backend reported through the proxies (prompt: prompt_eval_count, "
            "completion: eval_count)",
            ("kind",),
            registry=self.registry,
        )
        self.inference_chat_calls = Counter(
            "cynode_node_inference_chat_calls",
            "inference:chat calls of the orchestrator, by the status answered (499: the client left before "
            "any answer) and outcome (completed, refused, canceled, timeout, failed)",
            ("status", "outcome"),
            registry=self.registry,
        )
        self.inference_chat_duration = Histogram(
            "cynode_node_inference_chat_duration_seconds",
            "inference:chat call time, body read to last byte relayed, by outcome",
            ("outcome",),
            registry=self.registry,
            buckets=CHAT_BUCKETS,
        )
        self.sandbox_starts = Counter(
            "cynode_node_sandbox_starts",
            "Jobs handed to the sandbox runtime, by path (warm: a container started ahead took it; cold: "
            "its container was made for it)",
            ("path",),
            registry=self.registry,
        )
        for outcome in JOB_OUTCOMES:
            self.jobs.labels(outcome)
        for path in ("warm", "cold"):
            self.sandbox_starts.labels(path)
        for kind in ("prompt", "completion"):
            self.inference_tokens.labels(kind)

    def watch_slots(self, running: Callable[[], int], slots: Callable[[], int]) -> None:
        self.registry.register(SlotsCollector(running, slots))

    def watch_warm(self, ready: Callable[[], int]) -> None:
        """``cynode_node_warm_sandboxes``: warm containers waiting for a job, read at scrape time."""
        gauge = _GaugeCollector("cynode_node_warm_sandboxes", "Warm containers waiting for a job", ready)
        self.registry.register(gauge)

    def job_finished(self, outcome: str, seconds: float | None = None) -> None:
        self.jobs.labels(outcome).inc()
        if seconds is not None:
            self.job_duration.labels(outcome).observe(max(seconds, 0.0))

    def sandbox_ran(self, seconds: float, called_at: dt.datetime, outcome: SandboxOutcome) -> None:
        self.sandbox_run.observe(seconds)
        started = getattr(outcome, "container_started_at", None)
        if started is not None:
            self.sandbox_start.observe(max((started - called_at).total_seconds(), 0.0))

    def inference_request(self, endpoint: str, status: int, seconds: float) -> None:
        self.inference_requests.labels(endpoint, str(status)).inc()
        self.inference_latency.labels(endpoint).observe(seconds)

    def inference_chat(self, status: int, outcome: str, seconds: float) -> None:
        self.inference_chat_calls.labels(str(status), outcome).inc()
        self.inference_chat_duration.labels(outcome).observe(max(seconds, 0.0))

    def inference_usage(self, final: bytes) -> None:
        """Count the tokens in the backend's final JSON object (the last NDJSON line, or the whole body)."""
        try:
            data: Any = json.loads(final)
        except ValueError:
            return
        if not isinstance(data, dict):
            return
        for key, kind in (("prompt_eval_count", "prompt"), ("eval_count", "completion")):
            value = data.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                self.inference_tokens.labels(kind).inc(value)


class LastLine:
    """The last non-empty line of a byte stream fed in chunks, keeping at most one line (bounded)."""

    def __init__(self, limit: int = TOKEN_TAIL_LIMIT):
        self.limit = limit
        self._partial = bytearray()
        self._overflow = False
        self._last = b""

    def feed(self, data: bytes) -> None:
        cut = data.rfind(b"\n")
        if cut < 0:
            self._append(data)
            return
        # data[:cut] ends with complete lines; the first of them continues the kept partial line.
        end = cut
        while True:
            nl = data.rfind(b"\n", 0, end)
            segment = data[nl + 1 : end]
            if nl >= 0 and segment.strip():
                self._last = segment
                break
            if nl < 0:
                if self._overflow:
                    self._last = b""  # too long to keep: count nothing rather than an older line
                elif (bytes(self._partial) + segment).strip():
                    self._last = bytes(self._partial) + segment
                break
            end = nl
        self._partial = bytearray()
        self._overflow = False
        self._append(data[cut + 1 :])

    def _append(self, data: bytes) -> None:
        if self._overflow:
            return
        if len(self._partial) + len(data) > self.limit:
            self._partial = bytearray()
            self._overflow = True
            return
        self._partial += data

    @property
    def value(self) -> bytes:
        """The last complete non-empty line, or the unterminated rest when it is not empty."""
        if self._overflow:
            return b""
        if bytes(self._partial).strip():
            return bytes(self._partial)
        return self._last
