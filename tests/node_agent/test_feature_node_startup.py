"""Steps of features/worker_node/node_startup.feature.

The real Node Manager runs in this process, over real Podman, against the
STUB orchestrator (``stub_orchestrator.py``) on 127.0.0.1. Healthy inference
is the REAL embedded llama.cpp backend plugin; the failing one is the test
plugin ``broken`` (``node_helpers.BrokenBackend``). One step also runs a node
against the REAL control plane (conftest's orchestrator on PostgreSQL).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil
import pytest
import requests
from harness.orchestrator import InProcessDispatcher
from harness.processes import free_port, wait_until
from node_helpers import (
    CONFIG_TOKEN,
    NODE_PSK,
    BackendEvents,
    ContainerRecords,
    run_in_thread,
)
from pytest_bdd import given, parsers, scenarios, then, when
from sqlalchemy import select, text
from stub_orchestrator import CONFIG_PATH, REPORT_PATH, StubOrchestrator

from cynode_core.contract import InferenceBackend
from cynode_core.orchestrator.models import Node
from node_agent import manager as manager_module
from node_agent.manager import NodeManager
from node_agent.settings import NodeSettings

scenarios("worker_node/node_startup.feature")

WAIT = 30.0  # the longest any step waits for the node


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """The real control plane of one step dispatches, so "no task is dispatched" means something."""
    return {"dispatcher_enabled": True, "dispatch_poll_interval": 0.2, "dispatch_workers": 1}


@pytest.fixture(autouse=True)
def _capture_all_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)


@dataclasses.dataclass
class RunningNode:
    """A Node Manager in a thread; ``ended`` is when ``run()`` returned (monotonic)."""

    manager: NodeManager
    settings: NodeSettings
    thread: threading.Thread
    box: dict[str, Any]
    ended: float = 0.0

    @property
    def worker_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.worker_listen_port}"

    def join(self, timeout: float = WAIT) -> int:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"the node manager did not end within {timeout} s"
        code, self.ended = self.box["result"]
        return int(code)


@pytest.fixture
def start_node(plugin_manager: Any) -> Iterator[Callable[[NodeSettings], RunningNode]]:
    """Start Node Managers; each is stopped (and joined) at the end."""
    started: list[RunningNode] = []

    def start(settings: NodeSettings) -> RunningNode:
        manager = NodeManager(settings, plugin_manager=plugin_manager)
        thread, box = run_in_thread(lambda: (manager.run(), time.monotonic()))
        node = RunningNode(manager, settings, thread, box)
        started.append(node)
        return node

    yield start
    for node in started:
        node.manager.request_stop()
        node.thread.join(WAIT)


class InferenceWatch:
    """Polls an inference URL every 10 ms and records when ``GET /api/version`` first answered 200."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.answered_at: float | None = None  # monotonic
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while self.answered_at is None and not self._stop.wait(0.01):
            try:
                if requests.get(f"{self.url}/api/version", timeout=0.5).status_code == 200:
                    self.answered_at = time.monotonic()
            except requests.RequestException:
                pass

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def observe_backend_start(monkeypatch: pytest.MonkeyPatch, name: str, worker_url: str) -> dict[str, Any]:
    """Record the Worker API's state when the node calls ``start()`` on backend ``name``, and the backend's after.

    The backend is the real plugin's, built by its real factory; only its
    ``start`` is wrapped: it looks at the Worker API first, and once the real
    ``start()`` returned it checks that the inference endpoint answers.
    """
    seen: dict[str, Any] = {}
    found_by_name = manager_module.inference_backend_factories

    def factories(pm: Any) -> dict[str, Any]:
        found = dict(found_by_name(pm))
        real_factory = found[name]

        def factory(options: Any) -> Any:
            backend = real_factory(options)
            real_start = backend.start

            def start() -> None:
                run = f"{worker_url}/v1/worker/jobs:run"
                seen.update(
                    at=time.monotonic(),
                    healthz=requests.get(f"{worker_url}/healthz", timeout=5).status_code,
                    readyz=requests.get(f"{worker_url}/readyz", timeout=5).status_code,
                    tokens=tuple(
                        requests.post(
                            run, data="{", timeout=5, headers={"Authorization": f"Bearer {token}"}
                        ).status_code
                        for token in (CONFIG_TOKEN, "wrong-token")
                    ),
                )
                real_start()
                # start() has returned: the endpoint must answer now, before the node goes on to ack.
                answered = requests.get(f"{backend.base_url}/api/version", timeout=5).status_code
                seen.update(returned_at=time.monotonic(), answered_after_start=answered)

            backend.start = start
            return backend

        found[name] = factory
        return found

    monkeypatch.setattr(manager_module, "inference_backend_factories", factories)
    return seen


def node_calls(stub: StubOrchestrator) -> list[Any]:
    return [call for call in stub.calls if call.path != "/readyz"]


def log_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if not r.name.startswith("pytest_bdd")]


def listening(port: int) -> list[str]:
    return [
        c.laddr.ip
        for c in psutil.net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == port
    ]


# -- background -----------------------------------------------------------------------------


@given(parsers.parse('a stub orchestrator whose bootstrap advertises the node_config_url path "{path}"'))
def stub_orchestrator(ctx: dict[str, Any], stub: StubOrchestrator, path: str) -> None:
    assert CONFIG_PATH == path != "/v1/nodes/config"
    ctx["stub"] = stub


@given(
    'the stub config has "worker_api.orchestrator_bearer_token" <worker_token> and "inference_backend" '
    '{"enabled": true}'
)
def stub_config(stub: StubOrchestrator) -> None:
    assert stub.worker_token == CONFIG_TOKEN
    stub.inference_enabled = True


# -- a healthy start ---------------------------------------------------------------------------


@given("the node's inference backend is the embedded llama.cpp plugin, which answers only once its model has loaded")
def llamacpp_backend(
    ctx: dict[str, Any],
    stub: StubOrchestrator,
    node_settings: Any,
    llamacpp_home: Path,
    real_model: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = free_port()
    # A fixed port, so the step can watch the backend come up (the plugin reads CYNODE_LLAMACPP_PORT).
    monkeypatch.setenv("CYNODE_LLAMACPP_PORT", str(port))
    stub.selected_model = real_model
    # The shared home holds the assembled model; the node's own state stays under tmp_path.
    ctx["settings"] = node_settings(
        inference_backend="llamacpp", home=str(llamacpp_home), state_dir=str(tmp_path / "node-state")
    )
    ctx["inference_url"] = f"http://127.0.0.1:{port}"


@when(parsers.parse('the node manager starts with slug "{slug}" and the right PSK'))
def start_watched(
    ctx: dict[str, Any], stub: StubOrchestrator, start_node: Any, slug: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings: NodeSettings = ctx["settings"]
    assert (settings.node_slug, settings.node_psk) == (slug, NODE_PSK)
    ctx["start_seen"] = observe_backend_start(
        monkeypatch, "llamacpp", f"http://127.0.0.1:{settings.worker_listen_port}"
    )
    watch = InferenceWatch(ctx["inference_url"])
    try:
        ctx["node"] = start_node(settings)
        assert stub.wait_for(lambda: len(stub.calls_to("POST", REPORT_PATH)) >= 2, timeout=WAIT), stub.calls
    finally:
        watch.stop()
    ctx["watch"] = watch


@then(
    'the stub orchestrator sees, in order: register with "psk" and capability worker_api.base_url, GET '
    '"/custom/config" with the bootstrap node JWT, then the config ack'
)
def calls_in_order(ctx: dict[str, Any], stub: StubOrchestrator) -> None:
    calls = node_calls(stub)
    assert [(c.method, c.path) for c in calls[:3]] == [
        ("POST", "/v1/nodes/register"),
        ("GET", CONFIG_PATH),
        ("POST", CONFIG_PATH),
    ]
    register = calls[0].body
    assert register["psk"] == NODE_PSK
    assert register["capability"]["worker_api"]["base_url"] == ctx["settings"].advertised_url
    assert calls[1].authorization == f"Bearer {stub.node_jwt}"
    assert calls[2].authorization == f"Bearer {stub.node_jwt}"


@then("the Worker API is started with <worker_token> before the inference backend is started")
def worker_first(ctx: dict[str, Any]) -> None:
    seen = ctx["start_seen"]
    # When the node called the backend's start(), the Worker API already served, not ready yet,
    # and took the config's token (400 for the empty body) while refusing another one (401).
    assert (seen["healthz"], seen["readyz"], seen["tokens"]) == (200, 503, (400, 401)), seen
    assert ctx["watch"].answered_at is not None and seen["at"] < ctx["watch"].answered_at


@then(
    parsers.parse('the ack has "version" 1, "node_slug" "{slug}", the fetched "config_version" and "status" "{status}"')
)
def ack_fields(stub: StubOrchestrator, slug: str, status: str) -> None:
    (ack,) = stub.acks()
    assert set(ack) == {"version", "node_slug", "config_version", "ack_at", "status"}
    assert (ack["version"], ack["node_slug"], ack["config_version"], ack["status"]) == (
        1,
        slug,
        stub.config_version,
        status,
    )


@then("the ack arrives only after the inference endpoint answered healthy")
def ack_after_healthy(ctx: dict[str, Any], stub: StubOrchestrator) -> None:
    (ack_call,) = stub.calls_to("POST", CONFIG_PATH)
    seen = ctx["start_seen"]
    assert seen["answered_after_start"] == 200
    assert seen["returned_at"] < ack_call.at


@then("capability reports are then POSTed to the bootstrap node_report_url with the node JWT")
def reports_after(ctx: dict[str, Any], stub: StubOrchestrator) -> None:
    (ack_call,) = stub.calls_to("POST", CONFIG_PATH)
    reports = stub.calls_to("POST", REPORT_PATH)
    assert len(reports) >= 2 and all(r.at > ack_call.at for r in reports)
    assert all(r.authorization == f"Bearer {stub.node_jwt}" for r in reports)
    inference = reports[-1].body["inference"]
    assert (inference["supported"], inference["running"]) == (True, True)
    assert inference["available_models"] == [stub.selected_model]


# -- a backend that cannot start ------------------------------------------------------------------


@given("the configured inference backend plugin cannot start (a test plugin whose start() raises)")
def broken_backend(ctx: dict[str, Any], node_settings: Any) -> None:
    ctx["settings"] = node_settings(inference_backend="broken")


@when("the node manager runs its start-up sequence")
def run_startup(ctx: dict[str, Any], start_node: Any) -> None:
    ctx["node"] = start_node(ctx["settings"])
    ctx["code"] = ctx["node"].join()


@then(
    'the stub orchestrator receives a config ack with the fetched "config_version", "status" "failed" and an '
    '"error" giving the inference start-up failure as its reason'
)
def failed_ack(stub: StubOrchestrator) -> None:
    failed = [a for a in stub.acks() if a["status"] == "failed"]
    assert len(failed) == 1
    ack = failed[0]
    assert ack["config_version"] == stub.config_version
    assert ack["error"]["type"] == "inference_start_failed"
    assert "inference start-up failed" in ack["error"]["message"]
    assert "no Ollama server answers" in ack["error"]["message"]  # the plugin's own reason


@then("only after that ack the node manager exits with a non-zero code and an error saying inference start-up failed")
def exits_after_ack(ctx: dict[str, Any], stub: StubOrchestrator, caplog: pytest.LogCaptureFixture) -> None:
    (ack_call,) = stub.calls_to("POST", CONFIG_PATH)
    assert ctx["code"] != 0
    assert ctx["node"].ended > ack_call.at
    assert any(line.startswith("node start-up failed: inference start-up failed") for line in log_lines(caplog))


@then('the stub orchestrator receives no config ack with status "applied"')
def no_applied(stub: StubOrchestrator) -> None:
    assert "applied" not in [a["status"] for a in stub.acks()]


@then('the node\'s Worker API /readyz does not answer 200 "ready"')
def never_ready(ctx: dict[str, Any], events: BackendEvents) -> None:
    # While the backend was being started the Worker API answered 503; now it is gone.
    assert events.events[0][0] == "start" and events.events[0][2] == {"readyz": 503}
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{ctx['node'].worker_url}/readyz", timeout=5)


@then("against a real control plane, GET /readyz stays 503 and no task is dispatched to the node")
def real_control_plane(orchestrator: Any, live_orchestrator: str, node_settings: Any, start_node: Any) -> None:
    state = orchestrator.app.extensions["cynode"]
    # The bootstrap must send the node back to this server's (random) port.
    state.settings = dataclasses.replace(state.settings, public_url=live_orchestrator)
    dispatcher = InProcessDispatcher(state)
    try:
        node = start_node(
            node_settings(
                orchestrator_url=live_orchestrator, node_psk=orchestrator.secrets.psk, inference_backend="broken"
            )
        )
        assert node.join() != 0
        with orchestrator.db.session() as session:
            (row,) = session.scalars(select(Node)).all()
            assert (row.config_ack_status, row.config_ack_version) == ("failed", row.config_version)
            assert "inference start-up failed" in (row.config_ack_error or "")
        login = requests.post(
            f"{live_orchestrator}/v1/auth/login",
            timeout=10,
            json={"handle": "admin", "password": orchestrator.secrets.admin_password},
        )
        token = login.json()["access_token"]
        created = requests.post(
            f"{live_orchestrator}/v1/tasks",
            json={"prompt": "echo never"},
            timeout=10,
            headers={"Authorization": f"Bearer {token}"},
        )
        assert created.status_code in (200, 201), created.text
        task_id = created.json()["task_id"]
        time.sleep(1.5)  # several dispatcher polls (every 0.2 s) pass
        ready = requests.get(f"{live_orchestrator}/readyz", timeout=10)
        assert ready.status_code == 503 and "dispatchable node: failing" in ready.text, ready.text
        with orchestrator.db.session() as session:
            jobs = session.execute(text("SELECT status, node_id FROM jobs WHERE task_id = :t"), {"t": task_id}).all()
        assert [(status, node_id) for status, node_id in jobs] == [("queued", None)]
    finally:
        dispatcher.stop()


# -- an existing inference service -----------------------------------------------------------------


@given("an Ollama-compatible service already answers on 127.0.0.1 on the host")
def existing_service(
    ctx: dict[str, Any], stub: StubOrchestrator, real_backend: InferenceBackend, real_model: str, node_settings: Any
) -> None:
    url = real_backend.base_url
    assert urlsplit(url).hostname == "127.0.0.1"
    assert requests.get(f"{url}/api/tags", timeout=10).status_code == 200
    stub.selected_model = real_model
    ctx["inference_url"] = url
    ctx["settings"] = node_settings(inference_backend="ollama", ollama_url=url)
    ctx["listening_before"] = {
        c.laddr for c in psutil.Process().net_connections(kind="inet") if c.status == psutil.CONN_LISTEN
    }


@when("the node manager starts")
def manager_starts(
    ctx: dict[str, Any],
    stub: StubOrchestrator,
    node_settings: Any,
    start_node: Any,
    container_records: ContainerRecords,
) -> None:
    ctx["records"] = container_records
    node = start_node(ctx.get("settings") or node_settings())
    ctx["node"] = node
    wait_until(
        lambda: not node.thread.is_alive() or stub.calls_to("POST", REPORT_PATH),
        WAIT,
        "the node to become ready or to end",
    )
    if not node.thread.is_alive():
        ctx["code"] = node.join()


@then(
    'the capability report has "inference.supported" true, "inference.existing_service" true and '
    '"inference.running" true'
)
def existing_reported(stub: StubOrchestrator, real_model: str) -> None:
    inference = stub.calls_to("POST", REPORT_PATH)[-1].body["inference"]
    assert (inference["supported"], inference["existing_service"], inference["running"]) == (True, True, True)
    assert real_model in inference["available_models"]
    # Found before registering (start-up check), so the registration said so too.
    assert stub.calls_to("POST", "/v1/nodes/register")[0].body["capability"]["inference"]["existing_service"]


@then('no inference container is started and the ack is "applied"')
def nothing_started(ctx: dict[str, Any], stub: StubOrchestrator) -> None:
    assert [a["status"] for a in stub.acks()] == ["applied"]
    assert ctx["records"].job_containers() == []  # only the runtime's start-up check ran a container
    listening_now = {c.laddr for c in psutil.Process().net_connections(kind="inet") if c.status == psutil.CONN_LISTEN}
    new = {addr.port for addr in listening_now - ctx["listening_before"]}
    assert new == {ctx["settings"].worker_listen_port}, new  # the Worker API, and no second inference server
    assert ctx["node"].manager.backend is not None and ctx["node"].manager.backend.base_url == ctx["inference_url"]


@then("the inference port is not bound on any non-loopback interface")
def loopback_only(ctx: dict[str, Any]) -> None:
    addresses = listening(int(urlsplit(ctx["inference_url"]).port or 0))
    assert addresses and all(ipaddress.ip_address(ip).is_loopback for ip in addresses), addresses


# -- registration refused, unsupported config -------------------------------------------------------


@given(parsers.parse('the stub orchestrator answers registration with {status:d} "{detail}"'))
def registration_refused(stub: StubOrchestrator, status: int, detail: str) -> None:
    stub.register_answer = (status, detail)


@then("it exits non-zero with an error naming the registration failure")
def exits_on_registration(ctx: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    assert ctx["code"] != 0
    assert "node start-up failed: registration failed: HTTP 401 Invalid registration PSK" in log_lines(caplog)


@then("it made no config fetch and started no Worker API")
def nothing_after_registration(ctx: dict[str, Any], stub: StubOrchestrator, events: BackendEvents) -> None:
    assert [(c.method, c.path) for c in node_calls(stub)] == [("POST", "/v1/nodes/register")]
    assert events.events == []
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{ctx['node'].worker_url}/healthz", timeout=5)


@then("no log line contains the PSK")
def psk_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    lines = log_lines(caplog)
    assert lines and not [line for line in lines if NODE_PSK in line]


@given(parsers.parse('the stub config has "version" {version:d}'))
def config_version(stub: StubOrchestrator, version: int) -> None:
    stub.config_version_payload = version


@then('it sends a config ack with "status" "failed" and an "error" whose "type" names the unsupported version')
def unsupported_ack(stub: StubOrchestrator) -> None:
    (ack,) = stub.acks()
    assert ack["status"] == "failed" and ack["config_version"] == stub.config_version
    assert ack["error"]["type"] == "unsupported_config_version"
    assert "version 2" in ack["error"]["message"]


@then("it does not start sandbox work or report ready")
def no_sandbox_work(ctx: dict[str, Any], stub: StubOrchestrator, events: BackendEvents) -> None:
    assert ctx["records"].job_containers() == []
    assert stub.calls_to("POST", REPORT_PATH) == []
    assert events.events == []  # no inference backend either
    assert ctx["node"].manager.readiness.check() is not None
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{ctx['node'].worker_url}/readyz", timeout=5)


@then("after sending that ack it exits with a non-zero code")
def exits_after_failed_ack(ctx: dict[str, Any], stub: StubOrchestrator) -> None:
    (ack_call,) = stub.calls_to("POST", CONFIG_PATH)
    assert ctx["code"] != 0 and ctx["node"].ended > ack_call.at
