"""The orchestrator's Prometheus metrics, served at ``GET /metrics`` on both ports.

Each app has its own ``CollectorRegistry`` (never the library's global one),
so several apps in one process, as in the tests, do not collide.

Two kinds of numbers:

- this process's own: HTTP requests and latency (``cynode_http_*``),
  dispatch attempts, failures and round-trip times of the dispatcher
  threads in this process (``cynode_dispatch_*``, ``cynode_job_duration_seconds``),
  task log followers connected (``cynode_log_followers``);
- the database's truth, read at scrape time with one cheap query
  (:class:`StateCollector`): tasks by status, queue depth, the age of the
  oldest queued job, nodes by status. Its cost does not grow with the
  number of finished tasks or jobs (tests/test_metrics_scan.py). Several orchestrators share one
  database, so every one of them reports the same values; aggregate them
  with ``max``, not ``sum``.

``/metrics`` needs no token, like ``/healthz``: it holds counts, durations,
status names and URL rules only — no user, task, node or token value.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import text

from cynode_core.contract.job import TASK_API_STATUSES, TaskStatus
from cynode_core.http_metrics import HttpMetrics
from cynode_core.orchestrator.db import Database
from cynode_core.orchestrator.models.nodes import NODE_STATUSES

log = logging.getLogger(__name__)

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
# reads the partial index idx_jobs_queue only, and nodes are few.
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
    """
)


class StateCollector(Collector):
    """Gauges computed from PostgreSQL at scrape time: tasks, queue, nodes, and whether the read worked."""

    def __init__(self, db: Database):
        self.db = db

    def describe(self) -> Iterable[Metric]:
        # Registration asks for the names; answering here keeps it from querying the database.
        return list(self._families({}, {}, 0.0, 0.0, up=True))

    def collect(self) -> Iterable[Metric]:
        tasks: dict[str, float] = {}
        nodes: dict[str, float] = {}
        depth = oldest = 0.0
        try:
            with self.db.engine.connect() as conn:
                conn.execute(text(f"SET LOCAL statement_timeout = {STATE_QUERY_TIMEOUT_MS}"))
                rows = conn.execute(_STATE_SQL).all()
                conn.rollback()
        except Exception as exc:  # noqa: BLE001 - a scrape reports the database as down instead of failing
            log.warning("metrics: database state query failed (%s)", type(exc).__name__)
            yield from self._families({}, {}, 0.0, 0.0, up=False, with_state=False)
            return
        for kind, key, value in rows:
            if kind == "task":
                status = TaskStatus(key).api_value
                tasks[status] = tasks.get(status, 0.0) + value
            elif kind == "node":
                nodes[key] = value
            elif key == "depth":
                depth = value
            else:
                oldest = value
        yield from self._families(tasks, nodes, depth, oldest, up=True)

    @staticmethod
    def _families(
        tasks: dict[str, float],
        nodes: dict[str, float],
        depth: float,
        oldest: float,
        *,
        up: bool,
        with_state: bool = True,
    ) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "cynode_db_up", "1 when the database state query of this scrape succeeded, else 0", value=1.0 if up else 0.0
        )
        if not with_state:
            return
        family = GaugeMetricFamily("cynode_tasks", "Tasks in the database by status", labels=("status",))
        for status in dict.fromkeys((*TASK_API_STATUSES, *tasks)):
            family.add_metric((status,), tasks.get(status, 0.0))
        yield family
        yield GaugeMetricFamily("cynode_queue_depth", "Jobs waiting to be dispatched (status queued)", value=depth)
        yield GaugeMetricFamily(
            "cynode_queue_oldest_job_age_seconds", "Age of the oldest queued job (0 when none)", value=oldest
        )
        family = GaugeMetricFamily("cynode_nodes", "Registered nodes by status", labels=("status",))
        for status in dict.fromkeys((*NODE_STATUSES, *nodes)):
            family.add_metric((status,), nodes.get(status, 0.0))
        yield family


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
        for outcome in DISPATCH_OUTCOMES:
            self.dispatch_attempts.labels(outcome)
        for reason in FAILURE_REASONS:
            self.dispatch_failures.labels(reason)
        self.registry.register(StateCollector(db))

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
