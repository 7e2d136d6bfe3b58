"""``/metrics`` reads a bounded number of rows, however many tasks have finished.

Real parts: the app on the test's own PostgreSQL database. The test records
every statement a scrape sends to the database (a SQLAlchemy engine event),
then replays each one under ``EXPLAIN (ANALYZE, FORMAT JSON)`` and adds up
the rows its scan nodes read (returned and filtered out). With 20 000
finished tasks and jobs in the tables, a scrape that counts tasks by
``GROUP BY`` over the table reads them all; a bounded one reads a few dozen.

The task gauges come from counters kept by triggers on ``tasks``
(migrations/versions/*_bounded_tables.py); the second test checks them
against a real ``count(*)`` through inserts, updates, deletes, a rollback, a
fold of the counters and a truncate.
"""

from __future__ import annotations

import json
from typing import Any

from harness.api import ApiClient
from harness.orchestrator import OrchestratorUnderTest
from metrics_samples import families_of, value
from sqlalchemy import event, text

from cynode_core.contract.job import TaskStatus
from cynode_core.orchestrator.services.retention import fold_task_counts

FINISHED = 20_000
MAX_ROWS_READ = 500


def fill(orchestrator: OrchestratorUnderTest, finished: int, queued: int) -> None:
    with orchestrator.db.engine.begin() as conn:
        conn.execute(
            text(
                "WITH t AS (INSERT INTO tasks (id, status, closed, prompt) "
                "SELECT gen_random_uuid(), 'completed', true, 'echo' FROM generate_series(1, :n) RETURNING id) "
                "INSERT INTO jobs (id, task_id, status) SELECT gen_random_uuid(), id, 'completed' FROM t"
            ),
            {"n": finished},
        )
        conn.execute(
            text(
                "WITH t AS (INSERT INTO tasks (id, status, prompt) "
                "SELECT gen_random_uuid(), 'pending', 'echo' FROM generate_series(1, :n) RETURNING id) "
                "INSERT INTO jobs (id, task_id, status) SELECT gen_random_uuid(), id, 'queued' FROM t"
            ),
            {"n": queued},
        )
    with orchestrator.db.engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE"))


def scrape_statements(orchestrator: OrchestratorUnderTest) -> tuple[dict[str, Any], list[tuple[str, Any]]]:
    """One ``GET /metrics``, with every statement it sent to the database."""
    seen: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        seen.append((statement, parameters))

    engine = orchestrator.db.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        resp = ApiClient.in_process(orchestrator.app).get("/metrics")
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert resp.status_code == 200, resp.text
    return families_of(resp.text), seen


def rows_read(plan: dict[str, Any]) -> list[tuple[str, str, float]]:
    """``(node type, relation, rows read)`` of every scan node in a plan tree."""
    found = []
    if "Scan" in plan["Node Type"]:
        loops = plan.get("Actual Loops", 1)
        read = (plan.get("Actual Rows", 0) + plan.get("Rows Removed by Filter", 0)) * loops
        found.append((plan["Node Type"], plan.get("Relation Name", plan.get("Index Name", "?")), read))
    for child in plan.get("Plans", ()):
        found.extend(rows_read(child))
    return found


def test_a_scrape_reads_a_bounded_number_of_rows_with_many_finished_tasks(orchestrator: OrchestratorUnderTest) -> None:
    fill(orchestrator, FINISHED, queued=3)

    families, statements = scrape_statements(orchestrator)

    assert value(families, "cynode_db_up") == 1
    assert value(families, "cynode_tasks", status="completed") == FINISHED
    assert value(families, "cynode_tasks", status="queued") == 3
    assert value(families, "cynode_tasks", status="failed") == 0
    assert value(families, "cynode_queue_depth") == 3
    queries = [(s, p) for s, p in statements if s.lstrip().upper().startswith(("SELECT", "WITH"))]
    assert queries, statements
    scans = []
    with orchestrator.db.engine.connect() as conn:
        cursor = conn.connection.driver_connection.cursor()
        for statement, parameters in queries:
            cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}", parameters)
            plan = cursor.fetchone()[0]
            plan = json.loads(plan) if isinstance(plan, str) else plan
            scans.extend(rows_read(plan[0]["Plan"]))
        conn.rollback()
    total = sum(read for _, _, read in scans)
    assert total <= MAX_ROWS_READ, f"a scrape read {total:.0f} rows with {FINISHED} finished tasks: {scans}"


def true_counts(orchestrator: OrchestratorUnderTest) -> dict[str, float]:
    with orchestrator.db.engine.connect() as conn:
        rows = conn.execute(text("SELECT status, count(*) FROM tasks GROUP BY status")).all()
    return {TaskStatus(status).api_value: float(n) for status, n in rows}


def scraped_counts(orchestrator: OrchestratorUnderTest) -> dict[str, float]:
    families, _ = scrape_statements(orchestrator)
    counts = {s.labels["status"]: s.value for s in families["cynode_tasks"].samples}
    return {status: n for status, n in counts.items() if n}


def test_the_task_gauges_match_a_real_count_through_every_kind_of_change(orchestrator: OrchestratorUnderTest) -> None:
    engine = orchestrator.db.engine
    fill(orchestrator, 50, queued=20)
    assert scraped_counts(orchestrator) == true_counts(orchestrator) == {"completed": 50, "queued": 20}
    steps = [
        "UPDATE tasks SET status = 'running' WHERE id IN (SELECT id FROM tasks WHERE status = 'pending' LIMIT 7)",
        "UPDATE tasks SET status = 'failed' WHERE id IN (SELECT id FROM tasks WHERE status = 'running' LIMIT 2)",
        "UPDATE tasks SET updated_at = now()",  # no status change
        "UPDATE tasks SET status = status",
        "DELETE FROM tasks WHERE id IN (SELECT id FROM tasks WHERE status = 'completed' LIMIT 5)",
        "INSERT INTO tasks (id, status, prompt) VALUES (gen_random_uuid(), 'canceled', 'x')",
    ]
    for step in steps:
        with engine.begin() as conn:
            conn.execute(text(step))
        assert scraped_counts(orchestrator) == true_counts(orchestrator), step
    with engine.connect() as conn:  # a rolled-back change leaves the counters as they were
        conn.execute(text("UPDATE tasks SET status = 'superseded'"))
        conn.rollback()
    assert scraped_counts(orchestrator) == true_counts(orchestrator)

    with engine.connect() as conn:
        before = conn.execute(text("SELECT count(*) FROM task_status_counts")).scalar_one()
        # A change in flight while the counters are folded is neither lost nor counted twice.
        with engine.connect() as writer:
            writer.execute(text("UPDATE tasks SET status = 'completed' WHERE status = 'running'"))
            fold_task_counts(conn)
            conn.commit()
            writer.commit()
        assert conn.execute(text("SELECT count(*) FROM task_status_counts")).scalar_one() < before
        assert scraped_counts(orchestrator) == true_counts(orchestrator)
        fold_task_counts(conn)
        conn.commit()
        # Folded: one row per status that has tasks.
        assert conn.execute(text("SELECT count(*) FROM task_status_counts")).scalar_one() == len(
            true_counts(orchestrator)
        )
    assert scraped_counts(orchestrator) == true_counts(orchestrator)

    with engine.begin() as conn:
        conn.execute(text("TRUNCATE tasks CASCADE"))
    assert scraped_counts(orchestrator) == true_counts(orchestrator) == {}
