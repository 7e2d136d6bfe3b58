"""A running node agent drops finished job records past ``CYNODE_JOB_RESULT_RETENTION`` (node_agent/job_store.py).

Before, records were pruned only when the agent started, so a node that ran
for months kept every job's output on disk. Real parts: the Node Manager
against the stub orchestrator over real Podman, and record files on disk
aged with ``os.utime``.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from typing import Any

from harness.processes import wait_until
from node_helpers import start_manager
from stub_orchestrator import REPORT_PATH, StubOrchestrator

from node_agent.job_result import interrupted_response, utc_now
from node_agent.job_store import STATE_FINISHED, JobRecord, JobStore
from node_agent.settings import NodeSettings


def test_a_running_node_prunes_finished_records_past_their_retention(
    node_settings: Callable[..., NodeSettings], plugin_manager: Any, stub: StubOrchestrator
) -> None:
    settings = node_settings(job_result_retention=3600, job_result_prune_interval=0.3)
    manager, thread, box = start_manager(settings, plugin_manager)
    try:
        # The first capability report comes once start-up is over.
        assert stub.wait_for(lambda: len(stub.calls_to("POST", REPORT_PATH)) >= 1 or "error" in box), stub.calls
        assert "error" not in box, box
        store = JobStore(settings.resolved_state_dir / "jobs")
        keys = {name: str(uuid.uuid4()) for name in ("old", "young", "running")}
        for name in ("old", "young"):
            key = keys[name]
            result = interrupted_response(f"task-{name}", key, utc_now())
            store.save_finished(JobRecord(key, f"task-{name}", STATE_FINISHED, result=result))
        store.mark_running(keys["running"], "task-running")
        two_hours_ago = time.time() - 7200
        for name in ("old", "running"):  # a running record is never pruned, however old
            os.utime(store.directory / f"{keys[name]}.json", (two_hours_ago, two_hours_ago))

        wait_until(lambda: not (store.directory / f"{keys['old']}.json").exists(), 10, "the old record to be pruned")
        assert (store.directory / f"{keys['young']}.json").exists()
        assert (store.directory / f"{keys['running']}.json").exists()
    finally:
        manager.request_stop()
        thread.join(30)


def test_prune_removes_only_finished_records_older_than_the_retention(tmp_path: Any) -> None:
    store = JobStore(tmp_path / "jobs")
    finished = str(uuid.uuid4())
    store.save_finished(JobRecord(finished, "t", STATE_FINISHED, result=interrupted_response("t", finished, utc_now())))
    running = str(uuid.uuid4())
    store.mark_running(running, "t")
    (store.directory / "unreadable.json").write_text("{not json")
    assert store.prune_finished(retention_seconds=60) == 0
    old = time.time() - 120
    for path in store.directory.iterdir():
        os.utime(path, (old, old))
    assert store.prune_finished(retention_seconds=60) == 1
    assert sorted(p.name for p in store.directory.iterdir()) == sorted([f"{running}.json", "unreadable.json"])
    assert store.get_finished(finished) is None  # not answered from memory either
