"""The node's ``node_capability_report_v1`` (docs/wire_contract.md#node-capability-report).

Required keys are always written; the contract's "omit when empty" keys
are dropped when they hold nothing. Values are measured on this host, not
the fixed ones of the reference implementation (CyNodeAI: ``ram_mb`` 4096).
"""

from __future__ import annotations

import logging
import os
import platform
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psutil
import requests

from cynode_core.contract import BackendFactory, InferenceBackend, SandboxRuntime
from cynode_core.contract.job import format_time
from node_agent.job_result import utc_now
from node_agent.settings import INFERENCE_NONE, NodeSettings

log = logging.getLogger(__name__)

# The bound on the existing-service probe (docs/wire_contract.md#node-startup, step 3).
EXISTING_SERVICE_PROBE_TIMEOUT = 2.0

# Python's machine names -> Go's GOARCH spellings, which the orchestrator expects.
_GOARCH = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv7l": "arm",
    "armv6l": "arm",
    "i386": "386",
    "i686": "386",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}


def go_os() -> str:
    """``runtime.GOOS`` for this host (``linux``, ``darwin``, ``windows``)."""
    return platform.system().lower() or "linux"


def go_arch() -> str:
    """``runtime.GOARCH`` for this host (``amd64``, ``arm64``, ...)."""
    machine = platform.machine().lower()
    return _GOARCH.get(machine, machine)


def cpu_cores() -> int:
    """CPUs this process may use (like Go's ``runtime.NumCPU``, which honours affinity)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def _distro() -> str:
    try:
        return platform.freedesktop_os_release().get("PRETTY_NAME", "")
    except OSError:
        return ""


def _storage_free_mb(path: Path) -> int:
    # The workspace root may not exist yet; measure the nearest existing parent.
    for candidate in (path, *path.parents):
        if candidate.exists():
            return shutil.disk_usage(candidate).free // (1024 * 1024)
    return 0


def _sandbox_features() -> list[str]:
    features = ["netns"]  # every sandbox runs with --network=none in its own namespace
    try:
        if "Seccomp:" in Path("/proc/self/status").read_text():
            features.append("seccomp")
    except OSError:
        pass
    if Path("/sys/fs/cgroup/cgroup.controllers").exists():
        features.append("cgroups_v2")
    return features


def _gpu_present() -> bool:
    # Device nodes of the NVIDIA and ROCm kernel drivers; no probing libraries.
    return Path("/dev/nvidia0").exists() or Path("/dev/kfd").exists()


def _omit_empty(obj: dict[str, Any], *keys: str) -> dict[str, Any]:
    for key in keys:
        if key in obj and obj[key] in (None, "", 0, False, [], {}):
            del obj[key]
    return obj


def existing_inference_service(factory: BackendFactory, options: Mapping[str, object]) -> str | None:
    """The URL of an inference service that already answers on this host for this backend, else ``None``.

    The start-up check of docs/wire_contract.md#node-startup, step 3. A
    backend that reuses a server (``ollama``) knows its URL before
    ``start()``; one that starts its own (``llamacpp``) has none yet. When
    that URL already answers ``GET /api/tags`` within 2 s, the node reports
    ``inference.existing_service`` and uses the service instead of starting one.
    A backend whose settings are unusable is not probed: its ``start()``
    reports the problem in the config ack.
    """
    try:
        # Building a backend starts nothing (start() does), so this one is simply dropped.
        url = factory(options).base_url
    except Exception:  # noqa: BLE001 - see above: start() gives the reason later
        return None
    if not url:
        return None
    with requests.Session() as session:
        session.trust_env = False  # a proxy from the environment must not answer for this host's service
        try:
            answered = session.get(f"{url.rstrip('/')}/api/tags", timeout=EXISTING_SERVICE_PROBE_TIMEOUT).ok
        except requests.RequestException:
            return None
    return url if answered else None


def inference_section(
    backend_name: str, backend: InferenceBackend | None, *, started: bool, existing_service: bool = False
) -> dict[str, Any]:
    """The report's ``inference`` object.

    ``none`` (the operator's explicit choice) reports ``supported: false``
    and mode ``disabled``, so the orchestrator sends no inference
    instruction. A configured backend is ``supported`` from the first
    report on (registration happens before it is started); it reports
    ``running`` and its models once started and answering.
    ``existing_service`` is what the start-up check found (see
    :func:`existing_inference_service`), unless the backend says otherwise.
    """
    if backend_name == INFERENCE_NONE:
        return {"supported": False, "mode": "disabled"}
    section: dict[str, Any] = {
        "supported": True,
        # A backend plugin may know that it reuses a server it did not start.
        "existing_service": bool(getattr(backend, "existing_service", existing_service)),
        "running": False,
        "available_models": [],
    }
    if backend is not None and started:
        try:
            section["available_models"] = list(backend.models())
            section["running"] = True
        except Exception as exc:  # noqa: BLE001 - a report must go out even when the backend is down
            log.warning("inference backend %s not answering: %s", backend_name, exc)
    return _omit_empty(section, "existing_service", "running", "available_models")


def build_capability_report(
    settings: NodeSettings,
    runtime: SandboxRuntime,
    *,
    backend_name: str,
    backend: InferenceBackend | None,
    backend_started: bool,
    existing_service: bool = False,
) -> dict[str, Any]:
    """A complete ``node_capability_report_v1`` for this node, now."""
    container_runtime: dict[str, Any] = {"runtime": runtime.name}
    try:
        container_runtime["version"] = runtime.version()
    except Exception as exc:  # noqa: BLE001 - the report stays useful without a version
        log.warning("sandbox runtime %s: no version: %s", runtime.name, exc)
    container_runtime["rootless_enabled"] = hasattr(os, "geteuid") and os.geteuid() != 0
    _omit_empty(container_runtime, "version", "rootless_enabled")

    node = _omit_empty(
        {"node_slug": settings.node_slug, "name": settings.node_name, "labels": list(settings.node_labels)},
        "name",
        "labels",
    )
    platform_info = _omit_empty(
        {"os": go_os(), "arch": go_arch(), "distro": _distro(), "kernel_version": platform.release()},
        "distro",
        "kernel_version",
    )
    compute = _omit_empty(
        {
            "cpu_cores": cpu_cores(),
            "ram_mb": psutil.virtual_memory().total // (1024 * 1024),
            "cpu_model": _cpu_model(),
            "storage_free_mb": _storage_free_mb(settings.resolved_workspace_root),
        },
        "cpu_model",
        "storage_free_mb",
    )
    return {
        "version": 1,
        "reported_at": format_time(utc_now()),
        "node": node,
        "platform": platform_info,
        "compute": compute,
        "gpu": {"present": _gpu_present()},
        "container_runtime": container_runtime,
        "sandbox": {"supported": True, "features": _sandbox_features(), "max_concurrency": settings.job_slots},
        "inference": inference_section(
            backend_name, backend, started=backend_started, existing_service=existing_service
        ),
        # job_reports: this node takes jobs:start and reports back (docs/wire_contract.md#worker-start-job);
        # inference_chat: it serves inference:chat (docs/wire_contract.md#worker-inference-chat).
        "worker_api": {
            "base_url": settings.advertised_url,
            "job_reports": settings.job_reports,
            "inference_chat": True,
        },
    }
