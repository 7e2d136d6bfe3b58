"""What a killed agent leaves (containers, workspaces, start records) is settled when the node starts again.

The leftovers are made as a killed agent makes them, over real Podman: job
containers labelled with the node's owner mark, run by ``runtime.run`` in
threads (the process that would have waited on them is gone), workspaces on
disk and start records in the job store; then a new executor starts on the
same state directory (issue 11, item 2; the e2e test kills a real agent).
"""

from __future__ import annotations

import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from harness.processes import free_port
from node_helpers import Worker, WorkerFactory, job_body

from cynode_core.contract import SandboxOutcome, SandboxRuntime, SandboxSpec
from node_agent.job_result import INTERRUPTED_NOTE
from node_agent.job_store import JobStore
from node_agent.manager import run_node
from node_agent.sandbox_spec import sandbox_owner
from node_agent.settings import NodeSettings
from node_agent.workspace import Workspaces

LABEL_NODE = "cynodeai.node"


class Leftovers:
    """Jobs left as a killed agent of ``settings`` leaves them, each with a workspace."""

    def __init__(self, runtime: SandboxRuntime, settings: NodeSettings, sandbox_image: str) -> None:
        self.runtime, self.settings, self.image = runtime, settings, sandbox_image
        self.store = JobStore(settings.resolved_state_dir / "jobs")
        self.workspaces = Workspaces(settings.resolved_workspace_root)
        self.runs: dict[str, tuple[threading.Thread, list[SandboxOutcome]]] = {}

    def job(self, *, recorded: bool, container: bool, owner: str | None = None) -> tuple[str, str]:
        """A job ``(job_id, task_id)`` with a start record if ``recorded`` and a running container if ``container``.

        It has a workspace under the node's root, unless ``owner`` says it is another node's job.
        """
        job_id, task_id = str(uuid.uuid4()), str(uuid.uuid4())
        if recorded:
            self.store.mark_running(job_id, task_id)
        workspace = self.workspaces.create(job_id) if owner is None else Path(tempfile.mkdtemp(dir=self.settings.home))
        if container:
            spec = SandboxSpec(
                job_id=job_id,
                task_id=task_id,
                image=self.image,
                command=["sleep", "600"],
                env={},
                workspace_dir=str(workspace),
                timeout_seconds=300,
                max_output_bytes=4096,
                owner=sandbox_owner(self.settings) if owner is None else owner,
            )
            outcomes: list[SandboxOutcome] = []
            thread = threading.Thread(target=lambda: outcomes.append(self.runtime.run(spec)), daemon=True)
            thread.start()
            self.runs[job_id] = (thread, outcomes)
        return job_id, task_id

    def containers(self, job_id: str) -> list[Any]:
        """The containers of ``job_id`` as Podman lists them (``attrs["State"]`` is the state)."""
        client = self.runtime.client  # type: ignore[attr-defined]
        return list(client.containers.list(all=True, filters={"label": f"cynodeai.job_id={job_id}"}))

    def wait_running(self) -> None:
        deadline = time.monotonic() + 30
        while not all([c.attrs["State"] for c in self.containers(job_id)] == ["running"] for job_id in self.runs):
            assert time.monotonic() < deadline, "the leftover containers did not start"
            time.sleep(0.2)


@pytest.fixture
def leftovers(podman_runtime: SandboxRuntime, sandbox_image: str) -> Iterator[Callable[[NodeSettings], Leftovers]]:
    made: list[Leftovers] = []

    def make(settings: NodeSettings) -> Leftovers:
        made.append(Leftovers(podman_runtime, settings, sandbox_image))
        return made[-1]

    yield make
    for left in made:  # whatever a failing test left
        for job_id, (thread, _) in left.runs.items():
            while thread.is_alive() and not podman_runtime.cancel(job_id):
                time.sleep(0.1)
            thread.join(15)


def _record(worker: Worker, job_id: str) -> dict[str, Any] | None:
    record = JobStore(worker.jobs_dir).get_finished(job_id)
    return record.result.to_json() if record is not None and record.result is not None else None


def test_a_restart_removes_what_the_killed_agent_left_and_records_its_jobs_failed(
    start_worker: WorkerFactory, leftovers: Callable[[NodeSettings], Leftovers]
) -> None:
    first = start_worker(keep_workspaces=True)
    left = leftovers(first.settings)
    in_store = left.job(recorded=True, container=True)
    store_lost = left.job(recorded=False, container=True)  # created, but its record was never written or lost
    no_container = left.job(recorded=True, container=False)  # killed before its container was made
    never_started = left.job(recorded=False, container=False)
    other_owner = f"/another/node/{uuid.uuid4()}"
    other_node = left.job(recorded=False, container=True, owner=other_owner)
    finished = job_body(["sh", "-c", "echo kept"])
    assert first.run(finished).json()["status"] == "completed"  # its workspace is kept: keep_workspaces
    left.wait_running()

    restarted = start_worker(home=str(first.settings.home), keep_workspaces=True)

    for job_id, _ in (in_store, store_lost):
        assert left.containers(job_id) == []
        thread, outcomes = left.runs[job_id]
        thread.join(15)
        assert outcomes and outcomes[0].status == "failed"
    assert [(c.attrs["State"], c.labels[LABEL_NODE]) for c in left.containers(other_node[0])] == [
        ("running", other_owner)
    ]
    for job_id, task_id in (in_store, store_lost, no_container):
        result = _record(restarted, job_id) or {}
        assert (result.get("status"), result.get("exit_code"), result.get("task_id")) == ("failed", -1, task_id)
        assert result["stderr"] == INTERRUPTED_NOTE
    assert _record(restarted, never_started[0]) is None  # it never ran: nothing to record
    assert (_record(restarted, finished["job_id"]) or {}).get("stdout") == "kept\n"
    # Only the finished job's workspace is left (kept as configured), and nothing of the others (a quota's image).
    left_names = [p.name for p in restarted.workspace_root.iterdir()]
    assert finished["job_id"] in left_names
    assert [n for n in left_names if not n.startswith(finished["job_id"])] == [], left_names
    left.workspaces.discard(finished["job_id"])  # unmounted, when it has a quota

    # The orchestrator's retry of a swept job gets the failure, not a second run.
    again = {**job_body(["sh", "-c", "echo again"]), "task_id": store_lost[1], "job_id": store_lost[0]}
    answer = restarted.run(again).json()
    assert (answer["status"], answer["stdout"], answer["stderr"]) == ("failed", "", INTERRUPTED_NOTE)
    assert left.containers(store_lost[0]) == []


def test_leftovers_are_cleared_before_the_node_waits_for_its_orchestrator(
    node_settings: Callable[..., NodeSettings],
    plugin_manager: Any,
    leftovers: Callable[[NodeSettings], Leftovers],
) -> None:
    settings = node_settings(
        orchestrator_url=f"http://127.0.0.1:{free_port()}", readiness_timeout=1.5, inference_backend="none"
    )
    left = leftovers(settings)
    job_id, task_id = left.job(recorded=False, container=True)
    left.wait_running()
    assert run_node(settings, plugin_manager=plugin_manager, handle_signals=False) == 1  # no orchestrator
    assert left.containers(job_id) == []
    record = left.store.get_finished(job_id)
    assert record is not None and record.result is not None and record.result.stderr == INTERRUPTED_NOTE
    assert record.task_id == task_id
    assert list(settings.resolved_workspace_root.iterdir()) == []
