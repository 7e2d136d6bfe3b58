"""The orchestrator's Prometheus metrics, served at ``GET /metrics`` on both ports.

Each app has its own ``CollectorRegistry`` (never the library's global one),
so several apps in one process, as in the tests, do not collide.

Two kinds of numbers:

- this process's own: HTTP requests and latency (``cynode_http_*``),
  dispatch attempts, failures and round-trip times of the dispatcher
  threads in this process (``cynode_dispatch_*``, ``cynode_job_duration_seconds``),
  task log followers connected (``cynode_log_followers``), the report
  latency of jobs handed over with ``jobs:start``
  (``cynode_job_report_latency_seconds``: the node's end time of the job,
  its end report's ``ended_at`` (milliseconds; else the result's, whole
  seconds), to the moment this process stored the result and the task
  became terminal; a node clock ahead of ours counts as 0);
- the database's truth, read at scrape time with one cheap query
  (:class:`StateCollector`): tasks by status, queue depth, the age of the
  oldest queued job, nodes by status, running jobs per node. Its cost does not grow with the
  number of finished tasks or jobs (tests/test_metrics_scan.py). Several orchestrators share one
  database, so every one of them reports the same values; aggregate them
  with ``max``, not ``sum``. One database gauge is this process's own:
  ``cynode_jobs_running_dispatched``, the running jobs whose lease this
  process's dispatcher holds (``lease_owner``): those its threads wait on
  and those it handed over with ``jobs:start`` (the node's reports renew
  the lease, they do not change its owner; a take-over by another
  orchestrator moves the job to that one). Sum it over orchestrators.

``/metrics`` needs no token, like ``/healthz``: it holds counts, durations,
status names, URL rules and node slugs (the name an operator gave a node;
nodes are few) only — no user, task or token value.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import text

from cynode_core.contract.job import TASK_API_STATUSES, TaskStatus
from cynode_core.http_metrics import HttpMetrics
from cynode_core.orchestrator.db import Database
from cynode_core.orchestrator.models.nodes import NODE_STATUSES

log = logging.getLogger(__name__)

REPORT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
JOB_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
# Outcomes of one dispatch attempt (a Worker API call).
DISPATCH_OUTCOMES = ("completed", "failed", "busy", "retry", "error")
# Why an attempt got no result (``dispatch_call.Outcome.reason``), plus lease recovery.
FAILURE_REASONS = ("unreachable", "timeout", "transport", "http_status", "bad_response", "lease_exhausted")
# The scrape must never hang on a busy database.
STATE_QUERY_TIMEOUT_MS = 2000

# One round trip for every database gauge, none of which reads more rows as
# finished tasks pile up: task counts are the sums of task_status_counts
# (kept by triggers on tasks, folded by the retention sweep), the queue part
# reads the partial index idx_jobs_queue only, nodes are few, and the
# running-job counts read the partial index idx_jobs_running_node (running
# jobs only; a node holds at most its slots of them).
_STATE_SQL = text(
    """
    SELECT 'task' AS kind, status AS key, sum(n)::float8 AS value FROM task_status_counts GROUP BY status
    UNION ALL
    SELECT 'node', status, count(*)::float8 FROM nodes GROUP BY status
    UNION ALL
    SELECT 'queue', q.k, q.v FROM (
        SELECT count(*)::float8 AS depth,
               coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8 AS oldest
        FROM jobs WHERE status = 'queued'
    ) s CROSS JOIN LATERAL (VALUES ('depth', s.depth), ('oldest', s.oldest)) AS q(k, v)
    UNION ALL
    SELECT 'running_node', n.node_slug,
           (SELECT count(*) FROM jobs r WHERE r.node_id = n.id AND r.status = 'running')::float8
    FROM nodes n
    UNION ALL
    SELECT 'running_owner', '', count(*)::float8 FROM jobs
    WHERE status = 'running' AND node_id IS NOT NULL AND lease_owner = CAST(:owner AS text)
    """
)


@dataclass
class _State:
    """What one scrape read from the database."""

    tasks: dict[str, float] = field(default_factory=dict)
    nodes: dict[str, float] = field(default_factory=dict)
    running_per_node: dict[str, float] = field(default_factory=dict)
    depth: float = 0.0
    oldest: float = 0.0
    running_dispatched: float = 0.0

    def add(self, kind: str, key: str, value: float) -> None:
        if kind == "task":
            status = TaskStatus(key).api_value
            self.tasks[status] = self.tasks.get(status, 0.0) + value
        elif kind == "node":
            self.nodes[key] = value
        elif kind == "running_node":
            self.running_per_node[key] = value
        elif kind == "running_owner":
            self.running_dispatched = value
        elif key == "depth":
            self.depth = value
        else:
            self.oldest = value


class StateCollector(Collector):
    """Gauges computed from PostgreSQL at scrape time: tasks, queue, nodes, running jobs, whether the read worked.

    ``owner`` is the ``lease_owner`` this process's dispatcher writes (None while it has none).
    """

    def __init__(self, db: Database):
        self.db = db
        self.owner: str | None = None

    def describe(self) -> Iterable[Metric]:
        # Registration asks for the names; answering here keeps it from querying the database.
        return list(self._families(_State(), up=True))

    def collect(self) -> Iterable[Metric]:
        state = _State()
        try:
            with self.db.engine.connect() as conn:
                conn.execute(text(f"SET LOCAL statement_timeout = {STATE_QUERY_TIMEOUT_MS}"))
                rows = conn.execute(_STATE_SQL, {"owner": self.owner}).all()
                conn.rollback()
        except Exception as exc:  # noqa: BLE001 - a scrape reports the database as down instead of failing
            log.warning("metrics: database state query failed (%s)", type(exc).__name__)
            yield from self._families(state, up=False, with_state=False)
            return
        for kind, key, value in rows:
            state.add(kind, key, value)
        yield from self._families(state, up=True)

    @staticmethod
    def _families(state: _State, *, up: bool, with_state: bool = True) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "cynode_db_up", "1 when the database state query of this scrape succeeded, else 0", value=1.0 if up else 0.0
        )
        if not with_state:
            return
        family = GaugeMetricFamily("cynode_tasks", "Tasks in the database by status", labels=("status",))
        for status in dict.fromkeys((*TASK_API_STATUSES, *state.tasks)):
            family.add_metric((status,), state.tasks.get(status, 0.0))
        yield family
        yield GaugeMetricFamily(
            "cynode_queue_depth", "Jobs waiting to be dispatched (status queued)", value=state.depth
        )
        yield GaugeMetricFamily(
            "cynode_queue_oldest_job_age_seconds", "Age of the oldest queued job (0 when none)", value=state.oldest
        )
        family = GaugeMetricFamily("cynode_nodes", "Registered nodes by status", labels=("status",))
        for status in dict.fromkeys((*NODE_STATUSES, *state.nodes)):
            family.add_metric((status,), state.nodes.get(status, 0.0))
        yield family
        family = GaugeMetricFamily("cynode_node_jobs_running", "Running jobs on each registered node", labels=("node",))
        for slug, count in sorted(state.running_per_node.items()):
            family.add_metric((slug,), count)
        yield family
        yield GaugeMetricFamily(
            "cynode_jobs_running_dispatched",
            "Running jobs whose lease this process's dispatcher holds (waited on or handed over with jobs:start)",
            value=state.running_dispatched,
        )


# Time to the first token of a chat answer, seconds.
TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Tokens a second of a chat answer after its first token.
RATE_BUCKETS = (1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0)


class ChatMetrics:
    """The chat surface's figures: completions by model, node, route and outcome; first-token time; token rate."""

    def __init__(self, registry: CollectorRegistry):
        self.completions = Counter(
            "cynode_chat_completions",
            "Chat turns this process answered (chat completions and responses), by model, node, route "
            "(pm, direct) and outcome (success, error, canceled, timeout)",
            ("model", "node", "route", "outcome"),
            registry=registry,
        )
        self.first_token = Histogram(
            "cynode_chat_time_to_first_token_seconds",
            "From a chat turn's start to the first token of its model, by route",
            ("route",),
            registry=registry,
            buckets=TTFT_BUCKETS,
        )
        self.token_rate = Histogram(
            "cynode_chat_tokens_per_second",
            "Completion tokens a second of a chat answer, from its first token to its end, by route",
            ("route",),
            registry=registry,
            buckets=RATE_BUCKETS,
        )

    def observe(
        self,
        *,
        model: str,
        node: str,
        route: str,
        outcome: str,
        first_token: float | None,
        tokens: int,
        generating: float,
    ) -> None:
        """One finished turn; ``first_token`` and ``generating`` in seconds (None: no token came)."""
        self.completions.labels(model[:100], node or "-", route, outcome).inc()
        if first_token is not None:
            self.first_token.labels(route).observe(first_token)
            if tokens > 1 and generating > 0:
                self.token_rate.labels(route).observe(tokens / generating)


class OrchestratorMetrics:
    """Everything ``/metrics`` of one orchestrator app shows; kept on the app's state."""

    def __init__(self, db: Database):
        self.registry = CollectorRegistry(auto_describe=True)
        self.http = HttpMetrics(self.registry, "cynode", logging.getLogger("cynode_core.access"))
        self.dispatch_attempts = Counter(
            "cynode_dispatch_attempts",
            "Worker API calls made by this process's dispatcher, by outcome "
            "(completed, failed: the node answered with that job status; busy: 503 no slot; "
            "retry: transport error, requeued; error: the job failed without a node result)",
            ("outcome",),
            registry=self.registry,
        )
        self.dispatch_failures = Counter(
            "cynode_dispatch_failures",
            "Dispatch attempts that got no job result, by reason",
            ("reason",),
            registry=self.registry,
        )
        self.job_duration = Histogram(
            "cynode_job_duration_seconds",
            "Dispatch round trip of a job that got a node result (Worker API call start to answer), by job status",
            ("status",),
            registry=self.registry,
            buckets=JOB_BUCKETS,
        )
        self.log_followers = Gauge(
            "cynode_log_followers",
            "Task log follow streams (GET /v1/tasks/{id}/logs?follow=true) this process serves now",
            registry=self.registry,
        )
        self.report_latency = Histogram(
            "cynode_job_report_latency_seconds",
            "From a job's end on its node (its end report's ended_at) to its result stored by this process, "
            "for jobs handed over with jobs:start",
            registry=self.registry,
            buckets=REPORT_BUCKETS,
        )
        for outcome in DISPATCH_OUTCOMES:
            self.dispatch_attempts.labels(outcome)
        for reason in FAILURE_REASONS:
            self.dispatch_failures.labels(reason)
        self.chat = ChatMetrics(self.registry)
        self.state = StateCollector(db)
        self.registry.register(self.state)

    def own_leases(self, owner: str) -> None:
        """Count the running jobs leased to ``owner`` (this process's dispatcher) as this process's."""
        self.state.owner = owner

    def observe_report(self, ended: dt.datetime | None) -> None:
        """One stored end report: the time since the node's end of the job (nothing when the node sent none)."""
        if ended is not None:
            self.report_latency.observe(max(0.0, (dt.datetime.now(dt.UTC) - ended).total_seconds()))

    def observe_dispatch(self, result_status: str | None, reason: str, seconds: float, *, will_retry: bool) -> None:
        """Count one Worker API call: its outcome, why it got no result, and its round trip if a job ran."""
        if result_status is not None:
            status = "completed" if result_status == "completed" else "failed"
            self.dispatch_attempts.labels(status).inc()
            self.job_duration.labels(status).observe(seconds)
            return
        if reason == "busy":
            self.dispatch_attempts.labels("busy").inc()
            return
        self.dispatch_attempts.labels("retry" if will_retry else "error").inc()
        self.dispatch_failures.labels(reason or "transport").inc()
