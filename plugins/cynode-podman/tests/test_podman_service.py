"""The private ``podman system service``: start, answer, stop, leave nothing behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cynode_podman.runtime import PodmanRuntime
from cynode_podman.service import PodmanService, ping, service_env

from cynode_core.contract import RuntimeUnavailable


def _processes_mentioning(text: str) -> list[int]:
    """Pids whose command line contains ``text``."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and text.encode() in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def test_service_starts_on_first_use_and_stops_on_close(tmp_path: Path) -> None:
    runtime = PodmanRuntime(state_dir=tmp_path)
    assert runtime.service is None
    assert runtime.version().startswith(("4.", "5."))
    service = runtime.service
    assert service is not None and service.pid is not None
    pid, socket_path = service.pid, service.socket_path
    assert socket_path == str(tmp_path / "podman" / "podman.sock") and ping(socket_path)
    runtime.close()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not os.path.exists(socket_path)
    assert _processes_mentioning(socket_path) == []
    runtime.close()  # idempotent


def test_deep_state_dir_gets_a_short_socket(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    service = PodmanService(deep / "podman")
    try:
        url = service.start()
        assert url.startswith("unix://") and ping(service.socket_path) and len(service.socket_path) < 100
        socket_dir = os.path.dirname(service.socket_path)
    finally:
        service.stop()
    assert not os.path.exists(socket_dir) and service.pid is None


def test_missing_podman_is_runtime_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RuntimeUnavailable, match="podman is not installed"):
        PodmanService(tmp_path / "podman").start()


def test_service_env_carries_no_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CYNODE_NODE_PSK", "psk-secret")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    monkeypatch.delenv("CONTAINERS_CONF", raising=False)
    env = service_env()
    assert "CYNODE_NODE_PSK" not in env and "HTTPS_PROXY" not in env
    assert env["CONTAINERS_CONF"] == "/etc/cynode/containers.conf" and env["PATH"]


def test_a_service_left_by_a_killed_agent_is_stopped_at_the_next_start(tmp_path: Path) -> None:
    import psutil
    from cynode_podman.service import PodmanService

    first = PodmanService(tmp_path / "run")
    first.start()
    orphan = first._proc
    assert orphan is not None
    first._proc = None  # the agent died without stopping it (SIGKILL)
    second = PodmanService(tmp_path / "run")
    try:
        second.start()
        assert not psutil.pid_exists(orphan.pid) or psutil.Process(orphan.pid).status() == psutil.STATUS_ZOMBIE
        assert (tmp_path / "run" / "service.pid").read_text() == str(second._proc.pid)  # type: ignore[union-attr]
    finally:
        second.stop()
        orphan.poll()
    assert not (tmp_path / "run" / "service.pid").exists()
