"""The orchestrator's settings: everything ``cynode orchestrator serve`` reads at start."""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from pathlib import Path
from typing import Any

from cynode_core.settings import (
    ConfigError,
    home_setting,
    log_format_setting,
    log_level_setting,
    parse_bool,
    parse_duration,
    parse_int,
    parse_list,
    parse_listen,
    parse_megabytes,
    parse_optional_path,
    parse_optional_str,
    parse_positive_int,
    register_settings_class,
    secret_setting,
    setting,
)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Where a node's Worker API may live unless the operator says otherwise:
# loopback and the private ranges; never link-local (cloud metadata) or public.
DEFAULT_NODE_URL_NETWORKS = ("127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")


# Whose X-Forwarded-For counts (with trust_forwarded_for): a proxy on this host.
DEFAULT_TRUSTED_PROXIES = ("127.0.0.0/8", "::1/128")


def parse_networks(value: Any) -> tuple[IPNetwork, ...]:
    """CIDRs, comma-separated or a YAML list (``10.0.0.0/8, fc00::/7``)."""
    return tuple(ipaddress.ip_network(item) for item in parse_list(value))


@register_settings_class
@dataclasses.dataclass(frozen=True)
class OrchestratorSettings:
    """Everything ``cynode orchestrator serve`` reads at start."""

    home: Path = home_setting("state directory (secrets, embedded PostgreSQL)")
    database_url: str | None = secret_setting(
        env=("DATABASE_URL",), help="PostgreSQL URL; unset: embedded PostgreSQL under CYNODE_HOME"
    )
    jwt_secret: str | None = secret_setting(
        env=("JWT_SECRET",), help="HS256 key, at least 32 bytes; unset: generated once under CYNODE_HOME"
    )
    admin_password: str | None = secret_setting(
        env=("BOOTSTRAP_ADMIN_PASSWORD",), help="password of the bootstrap admin; unset: generated, path printed"
    )
    node_psk: str | None = secret_setting(
        env=("NODE_REGISTRATION_PSK",), help="node registration pre-shared key; unset: generated under CYNODE_HOME"
    )
    gateway_listen: str = setting(
        "127.0.0.1:12080",
        parse=parse_listen,
        env=("USER_GATEWAY_LISTEN_ADDR", "LISTEN_ADDR"),
        help="User API Gateway listen address",
    )
    control_listen: str = setting(
        "127.0.0.1:12082", parse=parse_listen, env=("CONTROL_PLANE_LISTEN_ADDR",), help="control plane listen address"
    )
    public_url: str | None = setting(
        None,
        parse=parse_optional_str,
        env=("ORCHESTRATOR_PUBLIC_URL",),
        help="control-plane URL given to nodes; unset: from control_listen",
    )
    access_token_ttl: float = setting(
        900.0, parse=parse_duration, env=("JWT_ACCESS_DURATION",), help="access token lifetime"
    )
    refresh_token_ttl: float = setting(
        604800.0, parse=parse_duration, env=("JWT_REFRESH_DURATION",), help="refresh token lifetime"
    )
    node_token_ttl: float = setting(86400.0, parse=parse_duration, env=("JWT_NODE_DURATION",), help="node JWT lifetime")
    max_request_bytes: int = setting(
        10 * 1024 * 1024,
        parse=parse_positive_int,
        env=("MAX_REQUEST_BODY_MB",),
        alias_parse=parse_megabytes,
        help="request body cap (bytes)",
    )
    http_threads: int = setting(32, parse=parse_positive_int, help="request threads per orchestrator process")
    control_threads: int = setting(
        8,
        parse=parse_positive_int,
        help="request threads of the control plane, apart from the gateway's, so node reports never wait behind users",
    )
    http_connections: int = setting(1000, parse=parse_positive_int, help="open client connections per process")
    log_followers: int = setting(
        16,
        parse=parse_positive_int,
        help="task log followers (SSE streams, each holding a request thread) per process, at most half of "
        "http_threads; more get 503",
    )
    log_follow_heartbeat: float = setting(
        5.0, parse=parse_duration, help="seconds a quiet task log follow waits before sending a keepalive comment"
    )
    password_checks: int = setting(
        0,
        parse=parse_int,
        help="password hashes verified at once, on threads of their own at a lower CPU priority (0 = one per CPU)",
    )
    password_queue: int = setting(
        8,
        parse=parse_int,
        help="logins that may wait for a password check; more get 503 with Retry-After at once (waiting and "
        "checking logins together hold at most half of http_threads)",
    )
    login_rate_per_minute: int = setting(
        60,
        parse=parse_positive_int,
        env=("RATE_LIMIT_PER_MINUTE",),
        help="login attempts per client address per minute",
    )
    trust_forwarded_for: bool = setting(
        False,
        parse=parse_bool,
        help="take the client address from X-Forwarded-For / X-Real-IP when the peer is in trusted_proxies",
    )
    trusted_proxies: tuple[IPNetwork, ...] = setting(
        lambda: parse_networks(DEFAULT_TRUSTED_PROXIES),
        parse=parse_networks,
        help="proxies whose X-Forwarded-For is believed (CIDRs); the client is the rightmost address outside them; "
        f"default {', '.join(DEFAULT_TRUSTED_PROXIES)}",
    )
    refresh_rate_per_minute: int = setting(
        60, parse=parse_positive_int, help="token refresh attempts per client address per minute"
    )
    register_rate_per_minute: int = setting(
        60, parse=parse_positive_int, help="node registration attempts per client address per minute"
    )
    token_key: str | None = secret_setting(
        help="Fernet key for node tokens at rest; unset: generated under CYNODE_HOME"
    )
    login_handle_failures: int = setting(
        10,
        parse=parse_positive_int,
        help="failed logins per account after which the addresses that failed must wait (2 s, doubling per failure)",
    )
    login_handle_window: float = setting(
        900.0, parse=parse_duration, help="window counting failed logins (per account and per address)"
    )
    login_source_failures: int = setting(
        100, parse=parse_positive_int, help="failed logins per client address and window before it gets 429"
    )
    login_slowdown_max: float = setting(
        300.0, parse=parse_duration, help="longest wait for an address that keeps failing on one account"
    )
    worker_api_target_url: str | None = setting(
        None, parse=parse_optional_str, env=("WORKER_API_TARGET_URL",), help="override of every node's Worker API URL"
    )
    node_url_networks: tuple[IPNetwork, ...] = setting(
        lambda: parse_networks(DEFAULT_NODE_URL_NETWORKS),
        parse=parse_networks,
        help="networks a node's Worker API URL must point into (CIDRs; a host name must resolve inside them); "
        f"default {', '.join(DEFAULT_NODE_URL_NETWORKS)}",
    )
    dispatcher_enabled: bool = setting(
        True, parse=parse_bool, env=("DISPATCHER_ENABLED",), help="run dispatcher threads"
    )
    dispatch_workers: int = setting(8, parse=parse_positive_int, help="dispatcher threads per process")
    dispatch_poll_interval: float = setting(
        1.0, parse=parse_duration, env=("DISPATCH_POLL_INTERVAL",), help="fallback poll period when no NOTIFY arrives"
    )
    dispatch_http_margin: float = setting(
        60.0, parse=parse_duration, help="added to a job's timeout for the dispatch HTTP timeout"
    )
    node_probe_interval: float = setting(
        5.0, parse=parse_duration, help="period of the orchestrator's node readyz probes (0 = off)"
    )
    node_probe_failures: int = setting(2, parse=parse_positive_int, help="failed probes in a row that take a node out")
    node_heartbeat_timeout: float = setting(
        180.0, parse=parse_duration, help="a node silent for longer (no report, no config call) gets no jobs"
    )
    retry_placement_timeout: float = setting(
        15.0, parse=parse_duration, help="a job a node refused fails when no node takes its retry within this time"
    )
    lease_seconds: float = setting(30.0, parse=parse_duration, help="job lease length, renewed while a node runs it")
    max_attempts: int = setting(3, parse=parse_positive_int, help="dispatch attempts before a job fails")
    dispatch_fence_seconds: float = setting(
        0.0,
        parse=parse_duration,
        help="how long a job stays bound to a node that stopped answering mid-job before another node may get it "
        "(0 = until the job's own timeout plus dispatch_http_margin has passed since its last call)",
    )
    max_queued_per_user: int = setting(
        1000, parse=parse_positive_int, help="queued jobs one user may have; creating another is 429 with Retry-After"
    )
    max_running_per_user: int = setting(
        0, parse=parse_int, help="running jobs one user may have at once (0 = no cap); the rest wait in the queue"
    )
    job_timeout_seconds: int = setting(3600, parse=parse_positive_int, help="default job timeout sent to nodes")
    task_image: str = setting(
        "alpine:latest", help="sandbox image of command tasks (nodes may alias it to a local image)"
    )
    prompt_image: str = setting("python:alpine", help="sandbox image of prompt tasks (needs python3)")
    inference_model: str = setting("gemma3:270m", env=("INFERENCE_MODEL",), help="model name for prompt tasks")
    chat_extra_models: list[str] = setting(
        list, parse=parse_list, help="more models GET /v1/models offers when a ready node serves them"
    )
    chat_inference_url: str | None = setting(
        None,
        parse=parse_optional_str,
        env=("OLLAMA_BASE_URL", "INFERENCE_URL"),
        help="an Ollama-compatible base URL chat uses instead of the nodes (unset: the nodes)",
    )
    chat_max_concurrent_per_user: int = setting(
        2, parse=parse_positive_int, help="chat turns one user may have in flight; the next is 429 with Retry-After"
    )
    chat_timeout_seconds: float = setting(300.0, parse=parse_duration, help="deadline of one chat turn")
    chat_max_messages: int = setting(1000, parse=parse_positive_int, help="messages one chat request may carry")
    chat_max_message_bytes: int = setting(
        256 * 1024, parse=parse_positive_int, help="UTF-8 bytes of one chat message's text (413 beyond)"
    )
    chat_history_messages: int = setting(
        40, parse=parse_positive_int, help="newest thread messages sent to a model with a chat turn"
    )
    chat_history_chars: int = setting(
        24000, parse=parse_positive_int, help="characters of thread history sent to a model with a chat turn"
    )
    chat_stream_holdback_chars: int = setting(
        256, parse=parse_int, help="streamed text held back for secret redaction (0 = send each delta at once)"
    )
    chat_thread_idle_seconds: float = setting(
        7200.0, parse=parse_duration, help="a (user, project) conversation idle this long starts a new thread"
    )
    pma_enabled: bool = setting(True, parse=parse_bool, help="serve the cynodeai.pm chat model")
    pma_model: str | None = setting(
        None, parse=parse_optional_str, help="model behind cynodeai.pm (unset: inference_model)"
    )
    pma_max_steps: int = setting(4, parse=parse_positive_int, help="tool calls the PM agent may make in one turn")
    pma_tools: list[str] = setting(
        list, parse=parse_list, help="the tools the PM agent offers its model (comma-separated; unset: all it may call)"
    )
    pma_decide_timeout_seconds: float = setting(
        120.0, parse=parse_duration, help="deadline of one PM agent decide call (a step's model call)"
    )
    agent_seed: int = setting(42, parse=parse_int, help="sampling seed of the agents' decide calls")
    agent_prompt_chars: int = setting(
        12000, parse=parse_positive_int, help="characters of an agent's prompt; the oldest tool results go first"
    )
    agent_instructions_dir: Path | None = setting(
        None, parse=parse_optional_path, help="root of the agents' instruction bundles (unset: the packaged ones)"
    )
    sba_image: str | None = setting(
        None, parse=parse_optional_str, help="image of sandbox-agent jobs, with python3 3.9+ (unset: prompt_image)"
    )
    sba_max_runtime_seconds: int = setting(
        300, parse=parse_positive_int, help="how long a sandbox agent may work (its job's timeout is 30 s more)"
    )
    sba_max_output_bytes: int = setting(
        16384, parse=parse_positive_int, help="output a sandbox agent's tool shows it per step (bytes)"
    )
    sba_max_steps: int = setting(8, parse=parse_positive_int, help="steps a sandbox agent may take (1 to 50)")
    task_auto_ready: bool = setting(
        True,
        parse=parse_bool,
        help="a task created through the REST API starts at once unless it asks for planning_state draft "
        "(false: every REST task is a draft until POST /v1/tasks/{id}/ready); agent-created tasks are always drafts",
    )
    mcp_disabled_tools: list[str] = setting(
        list, parse=parse_list, help="MCP tools no agent may call (comma-separated exact names)"
    )
    mcp_calls_per_minute: int = setting(
        60, parse=parse_positive_int, help="MCP tool calls one agent token may make per minute (429 beyond)"
    )
    artifact_store: str = setting(
        "pg", help="blob store of new artifact content: pg (in this PostgreSQL, built in) or an installed plugin's"
    )
    artifact_dir: Path | None = setting(
        None, parse=parse_optional_path, help="directory of the fs blob store (unset: <home>/artifacts)"
    )
    artifact_max_bytes: int = setting(
        100 * 1024 * 1024, parse=parse_positive_int, help="largest artifact upload (bytes; 413 beyond)"
    )
    artifact_quota_bytes: int = setting(
        10 * 1024 * 1024 * 1024,
        parse=parse_positive_int,
        help="artifact bytes one user may own in all (413 beyond)",
    )
    retention_interval: float = setting(
        60.0,
        parse=parse_duration,
        help="how often the orchestrators delete rows past their retention and fold the task counters "
        "(one of them per interval; 0 = never)",
    )
    retention_batch_rows: int = setting(
        1000, parse=parse_positive_int, help="rows the retention sweep deletes per transaction"
    )
    audit_retention: float = setting(
        90 * 86400.0,
        parse=parse_duration,
        help="age past which auth and chat audit rows, and revoked or expired API keys, are deleted (0 = keep)",
    )
    rate_limit_retention: float = setting(
        86400.0,
        parse=parse_duration,
        help="rate-limit counters whose window started longer ago are deleted (never before the longest window)",
    )
    refresh_session_retention: float = setting(
        7 * 86400.0,
        parse=parse_duration,
        help="refresh sessions expired for longer are deleted; a revoked one is kept until it has expired (0 = keep)",
    )
    capability_retention: float = setting(
        86400.0,
        parse=parse_duration,
        help="capability snapshots older than this are deleted, except each node's newest (0 = keep)",
    )
    capability_snapshots_kept: int = setting(
        10, parse=parse_positive_int, help="newest capability snapshots of each node kept whatever their age"
    )
    disable_plugins: list[str] = setting(list, parse=parse_list, help="plugin names not to load")
    log_level: str = log_level_setting()
    log_format: str = log_format_setting()

    def validate(self) -> None:
        if self.jwt_secret is not None and len(self.jwt_secret.encode()) < 32:
            raise ConfigError(
                f"JWT secret is too short: {len(self.jwt_secret.encode())} bytes, at least 32 are required "
                "(CYNODE_JWT_SECRET / JWT_SECRET)"
            )
        if self.max_running_per_user < 0:
            raise ConfigError(f"max_running_per_user must be 0 (no cap) or more, got {self.max_running_per_user}")
        for name in ("public_url", "worker_api_target_url"):
            value = getattr(self, name)
            if value is not None and not re.match(r"^https?://[^/\s]+", value):
                raise ConfigError(f"{name} must be an http(s) URL, got {value!r}")

    @property
    def control_public_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host, _, port = self.control_listen.rpartition(":")
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        return f"http://{host}:{port}"
