"""Node agent settings: defaults < YAML (``CYNODE_CONFIG``) < environment.

Dotted YAML aliases follow the node start-up YAML
(docs/wire_contract.md#node-startup-config: ``orchestrator.url``,
``node.id``, ``worker_api.listen_port`` ...), and the reference
implementation's (CyNodeAI's) environment names are accepted as aliases.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

from cynode_core.settings import (
    ConfigError,
    home_setting,
    log_format_setting,
    log_level_setting,
    parse_bool,
    parse_duration,
    parse_int,
    parse_list,
    parse_optional_str,
    parse_path,
    parse_positive_int,
    register_settings_class,
    secret_setting,
    setting,
)
from node_agent.inference_policy import DEFAULT_MAX_CTX, DEFAULT_MAX_PREDICT

INFERENCE_NONE = "none"
# Sandbox limits that apply unless configured otherwise (docs/deployment.md#sandbox-limits).
DEFAULT_SANDBOX_CPUS = 1.0
DEFAULT_WORKSPACE_QUOTA_MB = 1024


def _one_of(value: object, allowed: tuple[str, ...]) -> str:
    text = str(value).strip()
    if text not in allowed:
        raise ValueError(f"must be one of {', '.join(allowed)}")
    return text


def parse_cpus(value: object) -> float | None:
    """A CPU count; '' or 0 means no limit."""
    text = str(value).strip()
    cpus = float(text) if text else 0.0
    if not math.isfinite(cpus) or cpus < 0:
        raise ValueError("must be a number of CPUs, 0 or more")
    return cpus or None


def parse_non_negative_int(value: object) -> int:
    number = parse_int(value)
    if number < 0:
        raise ValueError("cannot be negative")
    return number


def parse_warm_sandboxes(value: object) -> int:
    number = parse_int(value)
    if number < -1:
        raise ValueError("must be -1 (one per job slot), 0 (none) or a count")
    return number


def parse_aliases(value: object) -> dict[str, str]:
    """``{name: local}`` from a mapping or ``name=local,name2=local2`` ('' = no aliases)."""
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    aliases: dict[str, str] = {}
    for item in str(value).split(","):
        if not item.strip():
            continue
        name, sep, local = item.partition("=")
        if not sep or not name.strip() or not local.strip():
            raise ValueError(f"not NAME=LOCAL: {item.strip()!r}")
        aliases[name.strip()] = local.strip()
    return aliases


@register_settings_class
@dataclasses.dataclass(frozen=True)
class NodeSettings:
    """Everything ``cynode node serve`` reads at start."""

    home: Path = home_setting("cynode state directory")
    orchestrator_url: str = setting(
        "http://127.0.0.1:12082",
        env=("ORCHESTRATOR_URL",),
        yaml_keys=("orchestrator.url",),
        help="control-plane base URL",
    )
    node_psk: str | None = secret_setting(env=("NODE_REGISTRATION_PSK",), help="registration pre-shared key (required)")
    node_psk_file: Path | None = setting(
        None,
        parse=parse_path,
        yaml_keys=("orchestrator.registration_psk_file",),
        help="file holding the PSK, read when CYNODE_NODE_PSK is unset",
    )
    node_psk_env: str | None = setting(
        None,
        parse=parse_optional_str,
        yaml_keys=("orchestrator.registration_psk_env",),
        help="name of an environment variable holding the PSK",
    )
    connect_timeout: float = setting(
        10.0,
        parse=parse_duration,
        yaml_keys=("orchestrator.timeouts.connect_seconds",),
        help="connect timeout of calls to the orchestrator",
    )
    node_slug: str = setting("node-01", env=("NODE_SLUG",), yaml_keys=("node.id",), help="stable node identifier")
    node_name: str = setting("Default Node", env=("NODE_NAME",), yaml_keys=("node.name",), help="display name")
    node_labels: list[str] = setting(list, parse=parse_list, yaml_keys=("node.labels",), help="labels reported")
    http_timeout: float = setting(
        10.0,
        parse=parse_duration,
        env=("HTTP_TIMEOUT",),
        yaml_keys=("orchestrator.timeouts.request_seconds",),
        help="timeout of each call to the orchestrator",
    )
    readiness_timeout: float = setting(
        90.0,
        parse=parse_duration,
        env=("NODE_MANAGER_READINESS_TIMEOUT",),
        help="how long to wait for the orchestrator at start",
    )
    worker_listen_host: str = setting("127.0.0.1", yaml_keys=("worker_api.listen_host",), help="Worker API bind host")
    worker_listen_port: int = setting(
        12090, parse=parse_int, yaml_keys=("worker_api.listen_port",), help="Worker API port"
    )
    public_base_url: str | None = setting(
        None,
        parse=parse_optional_str,
        env=("NODE_ADVERTISED_WORKER_API_URL",),
        yaml_keys=("worker_api.public_base_url",),
        help="Worker API URL advertised to the orchestrator; unset: from the listen address",
    )
    max_request_bytes: int = setting(
        10 * 1024 * 1024,
        parse=parse_positive_int,
        yaml_keys=("worker_api.max_request_bytes",),
        help="job request body cap",
    )
    state_dir: Path | None = setting(
        None,
        parse=parse_path,
        env=("WORKER_API_STATE_DIR", "CYNODE_STATE_DIR"),
        yaml_keys=("storage.state_dir",),
        help="node state; unset: CYNODE_HOME/node/<slug>",
    )
    job_slots: int = setting(
        2,
        parse=parse_positive_int,
        yaml_keys=("sandbox.max_concurrency",),
        help="jobs run at once; more answer 503 with Retry-After",
    )
    warm_sandboxes: int = setting(
        -1,
        parse=parse_warm_sandboxes,
        yaml_keys=("sandbox.warm",),
        help="containers started ahead for jobs of the default image (-1: one per slot; 0: none; at most the slots)",
    )
    sandbox_mode: str = setting(
        "allow",
        parse=lambda v: _one_of(v, ("allow", "sandbox_only", "disabled")),
        yaml_keys=("sandbox.mode",),
        help="allow, sandbox_only or disabled (reported)",
    )
    sandbox_rootless: bool = setting(
        True,
        parse=parse_bool,
        yaml_keys=("sandbox.rootless",),
        help="prefer rootless containers where the runtime supports them",
    )
    default_network_policy: str = setting(
        "restricted", yaml_keys=("sandbox.default_network_policy",), help="every value means deny-all in Phase 1"
    )
    inference_mode: str = setting(
        "allow",
        parse=lambda v: _one_of(v, ("allow", "disabled", "require")),
        yaml_keys=("inference.mode",),
        help="reported as capability inference.mode",
    )
    sandbox_runtime: str = setting(
        "podman", env=("CONTAINER_RUNTIME",), yaml_keys=("sandbox.runtime",), help="sandbox runtime plugin name"
    )
    sandbox_image: str = setting(
        "localhost/cynode-sandbox:busybox",
        yaml_keys=("sandbox.default_image",),
        help="image for jobs that name none, and for the start-up check",
    )
    image_aliases: dict[str, str] = setting(
        lambda: {
            "alpine:latest": "localhost/cynode-sandbox:busybox",
            "python:alpine": "localhost/cynode-sandbox:python",
        },
        parse=lambda v: parse_aliases(v),
        yaml_keys=("sandbox.image_aliases",),
        help="NAME=LOCAL,... images substituted for registry names (no registry is reachable offline)",
    )
    podman_socket: str | None = setting(
        None, parse=parse_optional_str, help="Podman REST socket URL; unset: the agent starts its own service"
    )
    workspace_root: Path | None = setting(
        None,
        parse=parse_path,
        env=("WORKSPACE_ROOT",),
        yaml_keys=("sandbox.mount_root",),
        help="host parent of per-job workspaces; unset: <state_dir>/sandbox_mounts",
    )
    keep_workspaces: bool = setting(False, parse=parse_bool, help="keep each job's workspace after the job")
    workspace_quota_mb: int = setting(
        DEFAULT_WORKSPACE_QUOTA_MB,
        parse=parse_non_negative_int,
        help="size of each job's /workspace in MiB, a file system of its own (needs root; 0 = no quota)",
    )
    default_timeout_seconds: int = setting(
        3600,
        parse=parse_positive_int,
        env=("DEFAULT_TIMEOUT_SECONDS",),
        yaml_keys=("sandbox.timeouts.default_seconds",),
        help="job timeout when none is asked",
    )
    max_timeout_seconds: int = setting(
        10800, parse=parse_positive_int, yaml_keys=("sandbox.timeouts.max_seconds",), help="cap on any job timeout"
    )
    max_output_bytes: int = setting(
        262144, parse=parse_positive_int, env=("MAX_OUTPUT_BYTES",), help="per-stream stdout/stderr cap"
    )
    sandbox_memory: str | None = setting("512m", parse=parse_optional_str, help="memory limit per job ('' = none)")
    sandbox_pids: int = setting(256, parse=parse_int, help="pids limit per job (0 = none)")
    sandbox_cpus: float | None = setting(
        DEFAULT_SANDBOX_CPUS,
        parse=parse_cpus,
        help="CPU limit per job, in CPUs (a CFS quota; 0 or '' = none)",
    )
    inference_backend: str | None = setting(
        None,
        parse=parse_optional_str,
        yaml_keys=("inference.backend",),
        help="inference backend plugin (ollama, llamacpp) or 'none'; required",
    )
    ollama_url: str = setting(
        "http://127.0.0.1:11434",
        env=("OLLAMA_BASE_URL",),
        yaml_keys=("inference.ollama_url",),
        help="URL of an existing Ollama server (ollama backend)",
    )
    inference_model: str | None = setting(
        None,
        parse=parse_optional_str,
        yaml_keys=("inference.model",),
        help="model to serve; unset: the orchestrator's selected_model or the backend default",
    )
    inference_max_ctx: int = setting(
        DEFAULT_MAX_CTX,
        parse=parse_positive_int,
        help="largest options.num_ctx a job may ask the backend for (a larger one is lowered to it)",
    )
    inference_max_predict: int = setting(
        DEFAULT_MAX_PREDICT,
        parse=parse_positive_int,
        help="largest options.num_predict a job may ask the backend for (a larger one is lowered to it)",
    )
    node_inference_timeout_seconds: int = setting(
        300,
        parse=parse_positive_int,
        help="longest inference:chat call, request sent to last byte relayed (then 504, or the stream ends)",
    )
    capability_report_interval: float = setting(
        60.0, parse=parse_duration, env=("CAPABILITY_REPORT_INTERVAL",), help="period of capability reports"
    )
    job_result_retention: float = setting(
        7 * 86400.0, parse=parse_duration, help="how long finished job results stay on disk for retried dispatches"
    )
    job_reports: bool = setting(
        True,
        parse=parse_bool,
        help="advertise jobs:start: take a job at once and report its progress and end to the control plane",
    )
    job_result_prune_interval: float = setting(
        3600.0, parse=parse_duration, help="how often a running node drops finished job results past their retention"
    )
    shutdown_grace: float = setting(
        15.0, parse=parse_duration, help="how long shutdown waits for cancelled jobs to end"
    )
    disable_plugins: list[str] = setting(list, parse=parse_list, help="plugin names not to load")
    log_level: str = log_level_setting(yaml_keys=("logging.level",))
    log_format: str = log_format_setting(yaml_keys=("logging.format",))

    def validate(self) -> None:
        if not self.orchestrator_url:
            raise ConfigError("ORCHESTRATOR_URL is required (CYNODE_ORCHESTRATOR_URL)")
        if not self.node_slug:
            raise ConfigError("NODE_SLUG is required (CYNODE_NODE_SLUG)")
        if not 0 < self.worker_listen_port < 65536:
            raise ConfigError(f"worker_listen_port out of range: {self.worker_listen_port}")
        if self.default_timeout_seconds > self.max_timeout_seconds:
            raise ConfigError("default_timeout_seconds is larger than max_timeout_seconds")

    def require_psk(self) -> str:
        """The PSK from the environment or its file; a clear error when neither is set."""
        if self.node_psk:
            return self.node_psk
        if self.node_psk_env and os.environ.get(self.node_psk_env):
            return os.environ[self.node_psk_env].strip()
        if self.node_psk_file is not None:
            try:
                text = self.node_psk_file.read_text().strip()
            except OSError as exc:
                raise ConfigError(f"cannot read node_psk_file {self.node_psk_file}: {exc.strerror}") from exc
            if text:
                return text
        raise ConfigError("NODE_REGISTRATION_PSK is required (CYNODE_NODE_PSK or node_psk_file)")

    def require_inference_backend(self) -> str:
        if not self.inference_backend:
            raise ConfigError(
                "inference_backend is not set: name a backend (CYNODE_INFERENCE_BACKEND=llamacpp or ollama) "
                "or set it to 'none' to run this node without inference on purpose"
            )
        return self.inference_backend

    @property
    def resolved_state_dir(self) -> Path:
        return self.state_dir or (self.home / "node" / self.node_slug)

    @property
    def resolved_workspace_root(self) -> Path:
        return self.workspace_root or (self.resolved_state_dir / "sandbox_mounts")

    @property
    def advertised_url(self) -> str:
        if self.public_base_url:
            return self.public_base_url.rstrip("/")
        host = self.worker_listen_host
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        return f"http://{host}:{self.worker_listen_port}"

    @property
    def warm_pool_size(self) -> int:
        """How many warm containers to keep: the setting, at most the job slots; none while workspaces are kept."""
        if self.keep_workspaces:
            return 0
        wanted = self.job_slots if self.warm_sandboxes < 0 else self.warm_sandboxes
        return min(wanted, self.job_slots)

    def resolve_image(self, requested: str | None) -> str:
        """The local image a job runs: the default for none, an alias for a registry name."""
        if not requested:
            return self.sandbox_image
        return self.image_aliases.get(requested, requested)

    def runtime_options(self) -> dict[str, object]:
        """The plain mapping handed to a sandbox runtime factory."""
        return {
            "socket_url": self.podman_socket,
            "state_dir": str(self.resolved_state_dir),
        }

    def inference_options(self) -> dict[str, object]:
        """The plain mapping handed to an inference backend factory.

        The node manager adds what the orchestrator's config says
        (``selected_model``, ``env``) before it builds the backend.
        """
        return {
            "ollama_url": self.ollama_url,
            "model": self.inference_model,
            "state_dir": str(self.resolved_state_dir),
            "home": str(self.home),
        }
