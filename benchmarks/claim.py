"""Dispatcher claim rate vs a bare ``SKIP LOCKED`` loop on the same database (goal >= 0.8x).

Both drain the same queued jobs from one thread. The bare loop is a single
``UPDATE ... WHERE id = (SELECT ... FOR UPDATE SKIP LOCKED)`` per claim, in
plain age order. The dispatcher's claim takes the jobs in fair order across
their owners (``--owners``, default 1: all jobs of one user), places each on
a node with a free slot and records each owner's turn. It is measured as a
dispatcher with its default threads all idle claims (one claim takes a job
for every idle thread, at most 8: ``Dispatcher.claim``), and once more with
a single thread (one job per claim), against the same floor.
Run: .venv/bin/python -m benchmarks.claim [--jobs 2000] [--owners 1]
"""

from __future__ import annotations

import argparse
import dataclasses
import secrets
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import text

from benchmarks.harness import report
from cynode_core.orchestrator.app import create_app
from cynode_core.orchestrator.dispatch.dispatcher import Dispatcher
from cynode_core.orchestrator.process import open_resources
from cynode_core.orchestrator.settings import OrchestratorSettings
from cynode_core.settings import load_settings

BARE = (
    "UPDATE jobs SET status = 'running', lease_id = gen_random_uuid(), lease_expires_at = now() + interval '30 seconds' "
    "WHERE id = (SELECT id FROM jobs WHERE status = 'queued' ORDER BY created_at, id FOR UPDATE SKIP LOCKED LIMIT 1) "
    "RETURNING id"
)


def fill(resources, n: int, owners: int) -> None:  # type: ignore[no-untyped-def]
    """``n`` queued jobs, dealt round-robin to ``owners`` owners."""
    with resources.db.session() as session:
        session.execute(text("DELETE FROM jobs"))
        session.execute(text("DELETE FROM tasks"))
        session.execute(
            text(
                "WITH t AS (INSERT INTO tasks (id, status, prompt, summary) SELECT gen_random_uuid(), 'pending', 'echo', 'b' || g "
                "FROM generate_series(1, :n) g RETURNING id, summary) "
                "INSERT INTO jobs (id, task_id, owner_id, status, payload, created_at) SELECT gen_random_uuid(), id, "
                "(CAST(:owners AS uuid[]))[1 + CAST(substr(summary, 2) AS int) % :count], 'queued', "
                'CAST(\'{"image":"x","command":["sh","-c","echo"]}\' AS jsonb), clock_timestamp() FROM t'
            ),
            {"n": n, "owners": [uuid.uuid4() for _ in range(owners)], "count": owners},
        )


def drain(resources, state: Any, jobs: int, owners: int, *, threads: int) -> float:  # type: ignore[no-untyped-def]
    """Claims per second of a dispatcher with ``threads`` idle threads draining ``jobs`` queued jobs from one thread."""
    fill(resources, jobs, owners)
    dispatcher = Dispatcher(state)
    dispatcher.settings = dataclasses.replace(dispatcher.settings, dispatch_workers=threads)
    started = time.perf_counter()
    for _ in range(jobs):
        assert dispatcher.claim() is not None
    elapsed = time.perf_counter() - started
    dispatcher.queue.close()
    return jobs / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--owners", type=int, default=1, help="users the queued jobs belong to")
    args = parser.parse_args()
    settings = load_settings(
        OrchestratorSettings,
        environ={},
        overrides={
            "home": Path(tempfile.mkdtemp(prefix="cynode-claim-")),
            "admin_password": secrets.token_urlsafe(12),
            "dispatcher_enabled": False,
        },
    )
    resources = open_resources(settings)
    try:
        app = create_app(resources.settings, resources.db, resources.secrets)
        state = app.extensions["cynode"]
        with resources.db.session() as session:
            session.execute(
                text(
                    "INSERT INTO nodes (id, node_slug, status, config_version, config_ack_version, config_ack_status, "
                    "worker_api_target_url, worker_api_bearer_token, max_concurrency, last_seen_at) "
                    "VALUES (:id, 'bench', 'active', 'v1', 'v1', 'applied', 'http://127.0.0.1:9', :tok, 1000000, now())"
                ),
                {"id": uuid.uuid4(), "tok": state.cipher.encrypt("t")},
            )
        # The dispatcher's own claim: the cynode_claim_job hook, as a dispatcher thread asks it.
        ours = drain(resources, state, args.jobs, args.owners, threads=state.settings.dispatch_workers)
        one_by_one = drain(resources, state, args.jobs, args.owners, threads=1)
        fill(resources, args.jobs, args.owners)
        url = resources.db.url
        with psycopg.connect(url, autocommit=True) as conn:
            started = time.perf_counter()
            for _ in range(args.jobs):
                assert conn.execute(BARE).fetchone() is not None
            bare = args.jobs / (time.perf_counter() - started)
    finally:
        resources.close()
    report(
        f"claim rate ({args.owners} owner(s), {state.settings.dispatch_workers} idle threads)",
        ours,
        bare,
        "claims/s",
        ">= 0.8x",
    )
    report(f"claim rate ({args.owners} owner(s), one thread: a job per claim)", one_by_one, bare, "claims/s", "none")


if __name__ == "__main__":
    main()
