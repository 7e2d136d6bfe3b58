"""``/metrics`` scrape time with many finished tasks vs none (goal: about 1x).

The scrape reads task counts from counters kept by triggers, so 100 000
finished tasks and jobs should not make it slower. Two orchestrator apps,
each on its own embedded PostgreSQL, one empty and one filled, are scraped
in alternation, so load from anything else on the machine hits both alike.
For scale, the run also times the count the scrape used to make
(``count(*) ... GROUP BY status`` over ``tasks``) on the filled table.
Run: .venv/bin/python -m benchmarks.metrics_scrape [--tasks 100000]
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import text

from benchmarks.harness import report
from cynode_core.orchestrator.app import create_app
from cynode_core.orchestrator.process import ServerResources, open_resources
from cynode_core.orchestrator.settings import OrchestratorSettings
from cynode_core.settings import load_settings

SCRAPES = 200


def open_orchestrator() -> ServerResources:
    settings = load_settings(
        OrchestratorSettings,
        environ={},
        overrides={
            "home": Path(tempfile.mkdtemp(prefix="cynode-metrics-")),
            "admin_password": secrets.token_urlsafe(12),
            "dispatcher_enabled": False,
        },
    )
    return open_resources(settings)


def fill(resources: ServerResources, tasks: int) -> None:
    with resources.db.engine.begin() as conn:
        conn.execute(
            text(
                "WITH t AS (INSERT INTO tasks (id, status, closed, prompt) "
                "SELECT gen_random_uuid(), 'completed', true, 'echo' FROM generate_series(1, :n) RETURNING id) "
                "INSERT INTO jobs (id, task_id, status) SELECT gen_random_uuid(), id, 'completed' FROM t"
            ),
            {"n": tasks},
        )
    with resources.db.engine.connect() as conn:
        # Settled as autovacuum would leave it, so autovacuum does not run during the timing.
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE"))


def scraper(resources: ServerResources) -> Callable[[], None]:
    client = create_app(resources.settings, resources.db, resources.secrets).test_client()

    def scrape() -> None:
        assert client.get("/metrics").status_code == 200

    scrape()  # warm the pool and the caches
    return scrape


def timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=100_000)
    args = parser.parse_args()
    empty, filled = open_orchestrator(), open_orchestrator()
    try:
        fill(filled, args.tasks)
        scrape_empty, scrape_filled = scraper(empty), scraper(filled)
        samples: dict[str, list[float]] = {"empty": [], "filled": []}
        for _ in range(SCRAPES):
            samples["empty"].append(timed(scrape_empty))
            samples["filled"].append(timed(scrape_filled))

        def old_count() -> None:
            with filled.db.engine.connect() as conn:
                conn.execute(text("SELECT status, count(*) FROM tasks GROUP BY status")).all()

        counted = statistics.median(timed(old_count) for _ in range(20))
    finally:
        empty.close()
        filled.close()
    full_ms, empty_ms = (statistics.median(samples[k]) * 1000 for k in ("filled", "empty"))
    report(f"/metrics scrape with {args.tasks} finished tasks", full_ms, empty_ms, "ms", "about 1x")
    print(f"(the whole-table count the scrape used to make takes {counted * 1000:.1f} ms on the filled table)")


if __name__ == "__main__":
    main()
