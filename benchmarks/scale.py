"""Task get and list latency with 1M task rows vs the same with 1k rows (goal <= 1.1x).

The app runs in-process (Flask test client) on an embedded PostgreSQL; rows
are generated in SQL. Run: .venv/bin/python -m benchmarks.scale [--rows 1000000]
"""

from __future__ import annotations

import argparse
import secrets
import tempfile
import time
from pathlib import Path

from sqlalchemy import text

from benchmarks.harness import percentile, report
from cynode_core.orchestrator.app import create_app
from cynode_core.orchestrator.process import open_resources
from cynode_core.orchestrator.settings import OrchestratorSettings
from cynode_core.settings import load_settings

FILL = text(
    """
    INSERT INTO tasks (id, created_by, status, closed, prompt, summary, input_mode, created_at, updated_at)
    SELECT gen_random_uuid(), :user, (ARRAY['pending','running','completed','failed'])[1 + (g % 4)], g % 4 >= 2,
           'echo ' || g, 'bulk-' || (:start + g), 'commands',
           now() - make_interval(secs => (:start + g)), now() - make_interval(secs => (:start + g))
    FROM generate_series(1, :n) AS g
    """
)


def measure(client, headers, task_ids: list[str], runs: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    gets, lists = [], []
    for i in range(runs):
        started = time.perf_counter()
        assert client.get(f"/v1/tasks/{task_ids[i % len(task_ids)]}", headers=headers).status_code == 200
        gets.append(time.perf_counter() - started)
        started = time.perf_counter()
        assert client.get("/v1/tasks?limit=50", headers=headers).status_code == 200
        lists.append(time.perf_counter() - started)
    return percentile(gets, 50), percentile(lists, 50)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    password = secrets.token_urlsafe(12)
    settings = load_settings(
        OrchestratorSettings,
        environ={},
        overrides={
            "home": Path(tempfile.mkdtemp(prefix="cynode-scale-")),
            "admin_password": password,
            "dispatcher_enabled": False,
        },
    )
    resources = open_resources(settings)
    try:
        app = create_app(resources.settings, resources.db, resources.secrets)
        client = app.test_client()
        tokens = client.post("/v1/auth/login", json={"handle": "admin", "password": password}).get_json()
        headers = {"Authorization": f"Bearer {tokens['access_token']}"}
        with resources.db.session() as session:
            user = session.execute(text("SELECT id FROM users WHERE handle = 'admin'")).scalar()
            session.execute(FILL, {"user": user, "n": 1000, "start": 0})
        with resources.db.engine.connect() as conn:
            conn.execute(text("ANALYZE tasks"))
            conn.commit()
            sample = [str(r[0]) for r in conn.execute(text("SELECT id FROM tasks ORDER BY random() LIMIT 100"))]
        measure(client, headers, sample, 20)
        small_get, small_list = measure(client, headers, sample, args.runs)
        started = time.perf_counter()
        with resources.db.session() as session:
            session.execute(FILL, {"user": user, "n": args.rows - 1000, "start": 1000})
        with resources.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE tasks"))
            sample = [str(r[0]) for r in conn.execute(text("SELECT id FROM tasks TABLESAMPLE SYSTEM (1) LIMIT 100"))]
        print(f"filled {args.rows} task rows in {time.perf_counter() - started:.1f} s")
        measure(client, headers, sample, 20)
        big_get, big_list = measure(client, headers, sample, args.runs)
    finally:
        resources.close()
    report(f"scale get p50 ({args.rows} vs 1000 rows)", big_get, small_get, "s", "<= 1.1x")
    report(f"scale list p50 ({args.rows} vs 1000 rows)", big_list, small_list, "s", "<= 1.1x")


if __name__ == "__main__":
    main()
