"""The Node Manager's start-up sequence against a stub orchestrator, over real Podman.

See docs/wire_contract.md#node-startup.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from harness.processes import free_port
from node_helpers import CONFIG_TOKEN as TOKEN
from node_helpers import NODE_PSK as PSK
from node_helpers import BackendEvents, job_body, run_in_thread, start_manager, start_node_process
from stub_orchestrator import CONFIG_PATH, REPORT_PATH, StubOrchestrator

from cynode_core.settings import ConfigError
from node_agent.job_result import SHUTDOWN_NOTE
from node_agent.manager import NodeManager, run_node
from node_agent.settings import NodeSettings

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Rig:
    """What a node agent under test starts against: the stub orchestrator, settings pointing at it
    (``settings(**overrides)``), the plugins (the real ones and the test backends) and those backends' events."""

    stub: StubOrchestrator
    settings: Callable[..., NodeSettings]
    plugins: Any
    events: BackendEvents

    def run(self, settings: NodeSettings) -> int:
        """The node agent in this thread, to its exit code."""
        return run_node(settings, plugin_manager=self.plugins, handle_signals=False)

    def start(self, settings: NodeSettings) -> tuple[NodeManager, threading.Thread, dict[str, Any]]:
        """The Node Manager in a thread (see ``start_manager``)."""
        return start_manager(settings, self.plugins)


@pytest.fixture
def rig(stub: StubOrchestrator, node_settings: Any, plugin_manager: Any, events: BackendEvents) -> Rig:
    return Rig(stub, node_settings, plugin_manager, events)


def test_the_node_registers_fetches_config_starts_services_then_acks_applied(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = rig.settings()
    manager, thread, box = rig.start(settings)
    try:
        assert rig.stub.wait_for(lambda: len(rig.stub.calls_to("POST", REPORT_PATH)) >= 2), rig.stub.calls
        acked_at = rig.stub.calls_to("POST", CONFIG_PATH)[0].at

        # Order: readyz wait, register (PSK + worker_api.base_url), config GET with the JWT, ack, reports.
        node_calls = [(c.method, c.path) for c in rig.stub.calls if c.path != "/readyz"]
        assert node_calls[:3] == [("POST", "/v1/nodes/register"), ("GET", CONFIG_PATH), ("POST", CONFIG_PATH)]
        assert set(node_calls[3:]) == {("POST", REPORT_PATH)}
        assert rig.stub.calls[0].path == "/readyz"
        register = rig.stub.calls_to("POST", "/v1/nodes/register")[0].body
        assert register["psk"] == PSK
        assert register["capability"]["worker_api"]["base_url"] == f"http://127.0.0.1:{settings.worker_listen_port}"
        assert register["capability"]["inference"]["supported"] is True
        assert rig.stub.calls_to("GET", CONFIG_PATH)[0].authorization == f"Bearer {rig.stub.node_jwt}"

        # The Worker API ran (healthz 200, readyz not yet 200) before the backend was started;
        # the ack came only after the backend was healthy.
        assert rig.events.events[0][2] == {"healthz": 200, "readyz": 503}
        assert rig.events.when("healthy") < acked_at
        ack = rig.stub.acks()[0]
        assert set(ack) == {"version", "node_slug", "config_version", "ack_at", "status"}
        assert (ack["version"], ack["node_slug"], ack["config_version"], ack["status"]) == (
            1,
            "node-01",
            rig.stub.config_version,
            "applied",
        )
        for report in rig.stub.calls_to("POST", REPORT_PATH):
            assert report.authorization == f"Bearer {rig.stub.node_jwt}"
        inference = rig.stub.last_capability["inference"]
        assert (inference["running"], inference["available_models"]) == (True, ["tiny:1b"])
        assert rig.stub.last_capability["sandbox"]["max_concurrency"] == settings.job_slots

        # The backend got the orchestrator's model choice; the Worker API serves with the config's token.
        backend = manager.backend
        assert backend is not None and backend.options["selected_model"] == "tiny:1b"
        base = f"http://127.0.0.1:{settings.worker_listen_port}"
        assert requests.get(f"{base}/readyz", timeout=30).text == "ready"
        result = requests.post(
            f"{base}/v1/worker/jobs:run",
            json=job_body(["sh", "-c", "echo via-node"]),
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=60,
        ).json()
        assert (result["status"], result["stdout"]) == ("completed", "via-node\n")
    finally:
        manager.request_stop()
        thread.join(30)
    assert box.get("result") == 0
    assert rig.events.events[-1][0] == "stop"
    assert PSK not in caplog.text and TOKEN not in caplog.text and rig.stub.node_jwt not in caplog.text


def test_a_backend_that_cannot_start_sends_a_failed_ack_then_exits_non_zero(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    settings = rig.settings(inference_backend="broken")
    manager, thread, box = rig.start(settings)
    thread.join(60)
    assert box.get("result") == 1
    acks = rig.stub.acks()
    assert [a["status"] for a in acks] == ["failed"]
    assert acks[0]["config_version"] == rig.stub.config_version
    assert acks[0]["error"]["type"] == "inference_start_failed"
    assert "no Ollama server answers" in acks[0]["error"]["message"]
    assert "inference start-up failed" in acks[0]["error"]["message"]
    assert rig.events.events[0][2] == {"readyz": 503}  # never ready, even while it tried
    assert "inference start-up failed" in caplog.text
    assert rig.stub.calls_to("POST", REPORT_PATH) == []
    with pytest.raises(requests.ConnectionError):  # the Worker API is gone
        requests.get(f"http://127.0.0.1:{settings.worker_listen_port}/readyz", timeout=5)


def test_explicit_none_backend_runs_without_inference(rig: Rig) -> None:
    settings = rig.settings(inference_backend="none")
    manager, thread, box = rig.start(settings)
    try:
        assert rig.stub.wait_for(lambda: rig.stub.calls_to("POST", REPORT_PATH))
        assert [a["status"] for a in rig.stub.acks()] == ["applied"]
        assert rig.stub.last_capability["inference"] == {"supported": False, "mode": "disabled"}
        assert rig.events.events == []
    finally:
        manager.request_stop()
        thread.join(30)
    assert box.get("result") == 0


def test_a_missing_backend_setting_is_a_clear_config_error(rig: Rig) -> None:
    settings = rig.settings(inference_backend=None)
    with pytest.raises(ConfigError, match="inference_backend is not set.*'none'"):
        rig.run(settings)
    assert rig.stub.calls == []


def test_unknown_plugin_names_list_the_registered_ones(rig: Rig) -> None:
    with pytest.raises(ConfigError, match=r"unknown sandbox runtime 'dockr'.*registered: .*podman"):
        rig.run(rig.settings(sandbox_runtime="dockr"))
    with pytest.raises(ConfigError, match=r"unknown inference backend 'olama'.*registered: broken, .*stub"):
        rig.run(rig.settings(inference_backend="olama"))
    assert rig.stub.calls == []


def test_a_missing_psk_is_a_clear_config_error(rig: Rig) -> None:
    with pytest.raises(ConfigError, match="NODE_REGISTRATION_PSK is required"):
        rig.run(rig.settings(node_psk=None))
    assert rig.stub.calls == []


def test_a_rejected_psk_stops_start_up_without_leaking_it(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    settings = rig.settings(node_psk="a-wrong-psk-never-logged")
    assert rig.run(settings) == 1
    assert "registration failed: HTTP 401 Invalid registration PSK" in caplog.text
    assert "a-wrong-psk-never-logged" not in caplog.text
    assert rig.stub.calls_to("GET", CONFIG_PATH) == []
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{settings.worker_listen_port}/healthz", timeout=5)


def test_a_config_of_an_unsupported_version_is_acknowledged_failed(rig: Rig) -> None:
    rig.stub.config_version_payload = 2
    assert rig.run(rig.settings()) == 1
    acks = rig.stub.acks()
    assert [a["status"] for a in acks] == ["failed"]
    assert acks[0]["error"]["type"] == "unsupported_config_version"
    assert rig.events.events == []  # no backend, no Worker API
    assert rig.stub.calls_to("POST", REPORT_PATH) == []


def test_an_unreachable_orchestrator_ends_start_up_after_the_readiness_timeout(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    settings = rig.settings(orchestrator_url=f"http://127.0.0.1:{free_port()}", readiness_timeout=1.5)
    began = time.monotonic()
    assert rig.run(settings) == 1
    assert 1.0 <= time.monotonic() - began < 10
    assert "not reachable after 1.5 s" in caplog.text


def test_cynode_node_serve_exits_0_on_sigterm(stub: StubOrchestrator, tmp_path: Path, podman_socket_url: str) -> None:
    proc, _ = start_node_process(stub.url, tmp_path / "cli-home", podman_socket_url)
    try:
        assert stub.wait_for(lambda: stub.calls_to("POST", REPORT_PATH)), "the node never became ready"
    finally:
        code = proc.stop(timeout=30)
    output = proc.output
    assert code == 0, output
    assert "node node-01 is ready" in output
    assert PSK not in output and TOKEN not in output


def test_cynode_node_serve_reports_config_errors_with_exit_2(tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], "CYNODE_HOME": str(tmp_path), "CYNODE_NODE_PSK": PSK}
    proc = subprocess.run(
        [sys.executable, "-m", "node_agent.cli", "serve"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert "configuration error: inference_backend is not set" in proc.stderr


def test_stopping_the_node_cancels_running_jobs_then_exits_0(rig: Rig) -> None:
    settings = rig.settings(inference_backend="none")
    manager, thread, box = rig.start(settings)
    assert rig.stub.wait_for(lambda: rig.stub.calls_to("POST", REPORT_PATH))
    base = f"http://127.0.0.1:{settings.worker_listen_port}"
    job_thread, job_box = run_in_thread(
        lambda: requests.post(
            f"{base}/v1/worker/jobs:run",
            json=job_body(["sleep", "300"]),
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=60,
        )
    )
    executor = manager.executor
    assert executor is not None
    assert rig.stub.wait_for(lambda: executor.running_jobs == 1, timeout=10)
    began = time.monotonic()
    manager.request_stop()
    thread.join(30)
    job_thread.join(30)
    assert box.get("result") == 0
    assert time.monotonic() - began < 15
    result = job_box["result"].json()  # the answer went out before the server closed
    assert (result["status"], result["exit_code"]) == ("failed", -1)
    assert result["stderr"].endswith(SHUTDOWN_NOTE)
