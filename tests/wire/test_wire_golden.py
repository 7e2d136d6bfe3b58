"""The wire contract, frozen: every endpoint answers exactly as recorded in golden/*.json.

Each test replays one surface's script (scenario.py) against the code under
test and compares every normalised request/answer pair (recording.py) with
the golden one: status, headers, and the body TEXT (key order, whitespace,
escaping and trailing newline included).

    pytest tests/wire                          # compare
    CYNODE_WIRE_RECORD=1 pytest tests/wire     # rewrite golden/ from the current code

The apps under test come from targets.py (the only file importing cynode
code) and from the ``orchestrator`` / ``client`` fixtures of tests/conftest.py.
"""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from wire import scenario, targets
from wire.recording import Recorder, render, target_for

GOLDEN = Path(__file__).parent / "golden"
RECORD = os.environ.get("CYNODE_WIRE_RECORD") == "1"


def orchestrator_recorder(orchestrator: Any, client: Any, node_url: str = "") -> tuple[Recorder, targets.Orchestrator]:
    orch = targets.Orchestrator(orchestrator)
    literals = {orch.psk: "<psk>", orch.admin_password: "<admin-password>", orch.jwt_secret: "<jwt-secret>"}
    if node_url:
        literals[node_url.removeprefix("http://")] = "127.0.0.1:<fake-node-port>"
    return Recorder(target_for(client), literals), orch


def test_openapi(client: Any) -> None:
    rec = Recorder(target_for(client))
    scenario.openapi(rec)
    assert_golden("openapi", rec.records)


def test_control_plane(orchestrator: Any, client: Any, fake_node_url: str) -> None:
    rec, orch = orchestrator_recorder(orchestrator, client, fake_node_url)
    scenario.control_plane(rec, orch, fake_node_url)
    assert_golden("control_plane", rec.records)


def test_gateway(orchestrator: Any, client: Any, fake_node_url: str) -> None:
    rec, orch = orchestrator_recorder(orchestrator, client, fake_node_url)
    scenario.gateway(rec, orch, fake_node_url, targets.job_ids)
    assert_golden("gateway", rec.records)


def test_worker_api(worker: targets.Worker) -> None:
    rec = Recorder(target_for(worker.url), {worker.token: "<worker-token>"})
    scenario.worker_api(rec, worker)
    assert_golden("worker_api", rec.records)


# -- comparison ---------------------------------------------------------------------------


def assert_golden(surface: str, records: list[dict[str, Any]]) -> None:
    steps = [r["step"] for r in records]
    assert len(set(steps)) == len(steps), f"step names must be unique: {steps}"
    path = GOLDEN / f"{surface}.json"
    if RECORD:
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(json.dumps(records, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return
    assert path.exists(), f"no golden file {path}: record it with CYNODE_WIRE_RECORD=1"
    golden = json.loads(path.read_text(encoding="utf-8"))
    want = {r["step"]: r for r in golden}
    got = {r["step"]: r for r in records}
    problems = []
    if list(want) != list(got):
        problems.append(
            "steps differ (- golden, + now):\n"
            + "\n".join(difflib.unified_diff(list(want), list(got), "golden", "now", lineterm="", n=1))
        )
    for step in [s for s in want if s in got]:
        if want[step] != got[step]:
            problems.append(
                "\n".join(
                    difflib.unified_diff(
                        render(want[step]), render(got[step]), f"golden/{surface}.json", "now", lineterm="", n=4
                    )
                )
            )
    if problems:
        pytest.fail(
            f"{surface}: {len(problems)} difference(s) from {path} "
            "(intended? re-record with CYNODE_WIRE_RECORD=1 and review the diff of golden/):\n\n"
            + "\n\n".join(problems[:15]),
            pytrace=False,
        )
