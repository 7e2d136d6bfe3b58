"""The node_capability_report_v1 a node sends: measured values, Go spellings.

See docs/wire_contract.md#node-capability-report.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import psutil
import pytest
from node_helpers import make_settings

from cynode_core.contract import SandboxRuntime
from node_agent import capability
from node_agent.capability import build_capability_report


def test_the_report_has_every_required_key_with_real_values(podman_runtime: SandboxRuntime, tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        node_slug="node-07",
        node_name="Seven",
        node_labels="gpu-less,test",
        job_slots=3,
        public_base_url="http://worker-07.example:12090/",
    )
    report = build_capability_report(settings, podman_runtime, backend_name="none", backend=None, backend_started=False)
    assert report["version"] == 1
    assert re.match(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$", report["reported_at"])
    assert report["node"] == {"node_slug": "node-07", "name": "Seven", "labels": ["gpu-less", "test"]}
    assert report["platform"]["os"] == "linux"
    assert report["platform"]["arch"] in {"amd64", "arm64"}
    assert report["compute"]["cpu_cores"] == len(os.sched_getaffinity(0))
    assert report["compute"]["ram_mb"] == psutil.virtual_memory().total // (1024 * 1024)
    assert report["container_runtime"]["runtime"] == "podman"
    assert re.match(r"^\d+\.\d+", report["container_runtime"]["version"])
    assert report["sandbox"]["supported"] is True
    assert report["sandbox"]["max_concurrency"] == 3
    assert "netns" in report["sandbox"]["features"]
    assert report["inference"] == {"supported": False, "mode": "disabled"}
    assert report["worker_api"] == {
        "base_url": "http://worker-07.example:12090",
        "job_reports": True,
        "inference_chat": True,
    }


@pytest.mark.parametrize(
    ("machine", "goarch"),
    [
        ("x86_64", "amd64"),
        ("AMD64", "amd64"),
        ("aarch64", "arm64"),
        ("arm64", "arm64"),
        ("i686", "386"),
        ("riscv64", "riscv64"),
    ],
)
def test_architectures_use_go_spellings(monkeypatch: pytest.MonkeyPatch, machine: str, goarch: str) -> None:
    monkeypatch.setattr(capability.platform, "machine", lambda: machine)
    assert capability.go_arch() == goarch


class _Backend:
    name = "fake"
    existing_service = True

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail

    def start(self) -> None: ...

    @property
    def base_url(self) -> str:
        return "http://127.0.0.1:11434"

    def models(self) -> list[str]:
        if self.fail:
            raise RuntimeError("down")
        return ["tiny:1b"]

    def stop(self) -> None: ...


def test_inference_section_before_and_after_the_backend_starts() -> None:
    before = capability.inference_section("fake", None, started=False)
    assert before == {"supported": True}
    running = capability.inference_section("fake", _Backend(), started=True)
    assert running == {"supported": True, "existing_service": True, "running": True, "available_models": ["tiny:1b"]}
    down = capability.inference_section("fake", _Backend(fail=True), started=True)
    assert down == {"supported": True, "existing_service": True}
