"""The Node Manager: start-up sequence, readiness, capability reports, shutdown.

Start-up follows node contract section 7, in order; each failure is fatal
(log it, stop what was started, exit non-zero):

1. validate the settings (PSK, inference backend choice, plugin names);
2. wait for the orchestrator's ``/readyz`` (200 or 503 = reachable);
3. start-up checks: the sandbox runtime runs the configured image, the
   workspace root is writable, an inference service already answering for
   the configured backend is detected (it is then used, not duplicated);
4. register (PSK -> node JWT and bootstrap URLs);
5. fetch the node configuration;
6. start the Worker API with the configuration's bearer token;
7. start the inference backend plugin (unless the operator chose ``none``);
8. ack ``applied``, send the first capability report, report periodically.

From step 5 on, a failure to apply the configuration is first reported to
the orchestrator as a ``failed`` ack with the reason (decisions.md, Node 8).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
import uuid
from collections.abc import Callable
from types import FrameType
from typing import Any, NoReturn

import pluggy

from cynode_core.contract import InferenceBackend, SandboxRuntime
from cynode_core.contract.job import format_time
from cynode_core.plugin_manager import get_plugin_manager
from node_agent.capability import build_capability_report, existing_inference_service
from node_agent.client import ControlPlaneClient, ControlPlaneError, OrchestratorUnreachable
from node_agent.executor import JobExecutor
from node_agent.http_server import BackgroundServer
from node_agent.job_result import utc_now
from node_agent.node_config import NodeConfig, parse_node_config
from node_agent.readiness import Readiness, backend_probe, runtime_probe
from node_agent.registry import inference_backend_factories, pick, sandbox_runtime_factories
from node_agent.settings import INFERENCE_NONE, NodeSettings
from node_agent.worker_api import create_worker_app

log = logging.getLogger(__name__)

REGISTER_MAX_BACKOFF = 10.0
WAIT_LOG_EVERY = 10.0


class StartupError(Exception):
    """A start-up step failed; the message names the step and the cause."""


class _StopRequested(Exception):
    """A signal arrived during start-up."""


class NodeManager:
    """One node agent process: runs the start-up sequence, then serves until stopped."""

    def __init__(self, settings: NodeSettings, *, plugin_manager: pluggy.PluginManager | None = None) -> None:
        self.settings = settings
        self.readiness = Readiness()
        self._pm = plugin_manager
        self._stop = threading.Event()
        self._psk = ""
        self._backend_name = ""
        self._client: ControlPlaneClient | None = None
        self.runtime: SandboxRuntime | None = None
        self.backend: InferenceBackend | None = None
        self._backend_started = False
        self._existing_inference: str | None = None
        self.executor: JobExecutor | None = None
        self.server: BackgroundServer | None = None
        self._reporter: threading.Thread | None = None
        self._node_slug = settings.node_slug
        self._config_version = ""

    # ---------------------------------------------------------------- control

    def request_stop(self) -> None:
        """Ask the manager to shut down (what SIGTERM/SIGINT do); safe from any thread."""
        self._stop.set()

    def run(self) -> int:
        """Start up, serve until asked to stop, shut down; return the process exit code.

        ``ConfigError`` from step 1 propagates (the CLI turns it into exit 2);
        any later start-up failure returns 1; a clean stop returns 0, or 1
        when something could not be stopped.
        """
        try:
            self._start()
        except StartupError as exc:
            log.error("node start-up failed: %s", exc)
            self._shutdown()
            return 1
        except _StopRequested:
            log.info("stop requested during start-up")
            return 0 if self._shutdown() else 1
        except BaseException:
            self._shutdown()
            raise
        log.info("node %s is ready", self._node_slug)
        self._stop.wait()
        log.info("stopping node %s", self._node_slug)
        return 0 if self._shutdown() else 1

    # --------------------------------------------------------------- start-up

    def _start(self) -> None:
        settings = self.settings
        # 1. Validate: every setting problem surfaces before any network call.
        self._psk = settings.require_psk()
        self._backend_name = settings.require_inference_backend()
        pm = self._pm if self._pm is not None else get_plugin_manager()
        runtime_factory = pick(
            sandbox_runtime_factories(pm),
            settings.sandbox_runtime,
            kind="sandbox runtime",
            setting="CYNODE_SANDBOX_RUNTIME",
        )
        backend_factory = None
        if self._backend_name != INFERENCE_NONE:
            backend_factory = pick(
                inference_backend_factories(pm),
                self._backend_name,
                kind="inference backend",
                setting="CYNODE_INFERENCE_BACKEND",
            )
        else:
            log.info("inference backend: none (explicitly configured); this node runs without inference")
        self._client = ControlPlaneClient(settings.orchestrator_url, timeout=settings.http_timeout)

        # 2. Wait for the orchestrator.
        self._wait_for_orchestrator()

        # 3. Start-up checks.
        self.runtime = self._check_runtime(runtime_factory)
        self._check_workspace_root()
        if backend_factory is not None:
            self._existing_inference = existing_inference_service(backend_factory, settings.inference_options())
            if self._existing_inference:
                log.info(
                    "an inference service already answers at %s; it is used, none is started", self._existing_inference
                )
        self.executor = JobExecutor(self.runtime, settings)

        # 4. Register.
        self._register()

        # 5. Fetch the configuration.
        config = self._fetch_config()
        token = self._apply_config(config)

        # 6. Start the Worker API.
        self._start_worker_api(token)

        # 7. Inference.
        if backend_factory is not None:
            self._start_inference(backend_factory, config)
        elif config.inference_enabled:
            log.warning("the orchestrator asks for inference, but this node is configured with 'none'")

        # 8. Ready, ack, report.
        self.readiness.mark_ready()
        self._ack("applied")
        self._send_report()
        self._reporter = threading.Thread(target=self._report_loop, name="capability-reports", daemon=True)
        self._reporter.start()

    def _check_stop(self) -> None:
        if self._stop.is_set():
            raise _StopRequested()

    def _wait_for_orchestrator(self) -> None:
        assert self._client is not None
        settings = self.settings
        log.info(
            "waiting for the orchestrator at %s/readyz (up to %g s)",
            settings.orchestrator_url.rstrip("/"),
            settings.readiness_timeout,
        )
        last_log = [0.0]

        def progress(elapsed: float) -> None:
            if elapsed - last_log[0] >= WAIT_LOG_EVERY:
                last_log[0] = elapsed
                log.info("orchestrator not reachable yet (%.0f s of %g s)", elapsed, settings.readiness_timeout)

        try:
            self._client.wait_reachable(settings.readiness_timeout, stop=self._stop, on_wait=progress)
        except OrchestratorUnreachable as exc:
            self._check_stop()
            raise StartupError(f"waiting for the orchestrator: {exc}") from exc
        log.info("orchestrator reachable")

    def _check_runtime(self, factory: Callable[[dict[str, object]], SandboxRuntime]) -> SandboxRuntime:
        settings = self.settings
        self._check_stop()
        try:
            runtime = factory(settings.runtime_options())
        except Exception as exc:
            raise StartupError(f"sandbox runtime {settings.sandbox_runtime!r} could not be set up: {exc}") from exc
        self.runtime = runtime  # so shutdown closes it even when the check fails
        log.info("checking sandbox runtime %s with image %s", runtime.name, settings.sandbox_image)
        try:
            runtime.check(settings.sandbox_image)
        except Exception as exc:
            raise StartupError(f"sandbox runtime {runtime.name!r} cannot run {settings.sandbox_image}: {exc}") from exc
        return runtime

    def _check_workspace_root(self) -> None:
        root = self.settings.resolved_workspace_root
        probe = root / f".write-check-{uuid.uuid4().hex}"
        try:
            root.mkdir(parents=True, exist_ok=True, mode=0o700)
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as exc:
            raise StartupError(f"workspace root {root} is not writable: {exc}") from exc
        log.info("workspace root %s is writable", root)

    def _capability(self) -> dict[str, Any]:
        assert self.runtime is not None
        return build_capability_report(
            self.settings,
            self.runtime,
            backend_name=self._backend_name,
            backend=self.backend,
            backend_started=self._backend_started,
            existing_service=self._existing_inference is not None,
        )

    def _register(self) -> None:
        assert self._client is not None
        deadline = time.monotonic() + self.settings.readiness_timeout
        delay = 1.0
        while True:
            self._check_stop()
            try:
                self._client.register(self._psk, self._capability())
                return
            except ControlPlaneError as exc:
                transient = isinstance(exc, OrchestratorUnreachable) or (exc.status or 0) >= 500
                if not transient or time.monotonic() + delay > deadline:
                    raise StartupError(str(exc)) from exc
                log.warning("%s; retrying in %g s", exc, delay)
                if self._stop.wait(delay):
                    raise _StopRequested() from exc
                delay = min(delay * 2, REGISTER_MAX_BACKOFF)

    def _fetch_config(self) -> NodeConfig:
        assert self._client is not None
        self._check_stop()
        try:
            config = parse_node_config(self._client.fetch_config())
        except ControlPlaneError as exc:
            raise StartupError(str(exc)) from exc
        self._config_version = config.config_version
        self._node_slug = config.node_slug or self._node_slug
        log.info("fetched node configuration %s", self._config_version or "(no config_version)")
        return config

    def _apply_config(self, config: NodeConfig) -> str:
        """Check the configuration this node can apply; return the Worker API token."""
        assert self.executor is not None
        if not config.supported_version:
            self._fail_config(
                "unsupported_config_version",
                f"unsupported node configuration version {config.version!r} (this node applies version 1)",
            )
        if not config.worker_token:
            # Upstream skips the Worker API then; a node that cannot take jobs must not look ready.
            self._fail_config(
                "worker_api_token_missing", "the node configuration has no worker_api.orchestrator_bearer_token"
            )
        self.executor.apply_constraints(
            max_request_bytes=config.max_request_bytes, max_job_timeout_seconds=config.max_job_timeout_seconds
        )
        return config.worker_token

    def _start_worker_api(self, token: str) -> None:
        assert self.executor is not None and self.runtime is not None
        settings = self.settings
        self._check_stop()
        self.readiness.set_not_ready("starting: inference backend and config ack pending")
        self.readiness.add_probe(self.runtime.name, runtime_probe(self.runtime, settings.sandbox_image))
        app = create_worker_app(self.executor, bearer_token=token, readiness=self.readiness)
        try:
            # Enough threads for every slot, a repeat per running job, and health checks.
            server = BackgroundServer(
                app,
                host=settings.worker_listen_host,
                port=settings.worker_listen_port,
                threads=settings.job_slots * 2 + 4,
            )
        except OSError as exc:
            self._fail_config(
                "worker_api_start_failed",
                f"Worker API cannot listen on {settings.worker_listen_host}:{settings.worker_listen_port}: {exc}",
            )
        self.server = server
        server.start()

    def _start_inference(self, factory: Callable[[dict[str, object]], InferenceBackend], config: NodeConfig) -> None:
        self._check_stop()
        name = self._backend_name
        options: dict[str, object] = {**self.settings.inference_options(), **config.backend_options()}
        log.info("starting inference backend %s", name)
        try:
            self.backend = factory(options)
            self.backend.start()
            self._backend_started = True
            models = self.backend.models()  # the backend must answer before the node acks
        except Exception as exc:  # noqa: BLE001 - any plugin failure becomes a failed ack
            self._fail_config("inference_start_failed", f"inference start-up failed: backend {name!r}: {exc}")
        log.info("inference backend %s answers at %s with %d model(s)", name, self.backend.base_url, len(models))
        backend = self.backend
        assert self.executor is not None
        # From now on use_inference jobs get a per-job proxy to it (contract section 8).
        self.executor.set_inference_backend(backend.base_url)
        self.readiness.add_probe(f"inference backend {name}", backend_probe(backend))

    # ------------------------------------------------------------ config ack

    def _ack(self, status: str, error: dict[str, str] | None = None) -> None:
        assert self._client is not None
        ack: dict[str, Any] = {
            "version": 1,
            "node_slug": self._node_slug,
            "config_version": self._config_version,
            "ack_at": format_time(utc_now()),
            "status": status,
        }
        if error is not None:
            ack["error"] = error
        try:
            self._client.ack_config(ack)
        except ControlPlaneError as exc:
            if status == "failed":
                log.error("could not send the failed config ack: %s", exc)
                return
            self.readiness.set_not_ready("config ack failed")
            raise StartupError(str(exc)) from exc
        log.info("config %s acknowledged: %s", self._config_version or "(none)", status)

    def _fail_config(self, error_type: str, message: str) -> NoReturn:
        """Send a ``failed`` ack with the reason, then end start-up with it."""
        self._ack("failed", {"type": error_type, "message": message})
        raise StartupError(message)

    # ----------------------------------------------------- capability reports

    def _send_report(self) -> None:
        assert self._client is not None
        try:
            self._client.report_capability(self._capability())
        except ControlPlaneError as exc:
            if exc.status != 401:
                log.warning("%s", exc)
                return
            # The node JWT expired (no refresh in Phase 1): register again, then retry once.
            log.info("node JWT refused; registering again")
            try:
                self._rejoin()
                self._client.report_capability(self._capability())
            except ControlPlaneError as retry_exc:
                log.warning("%s", retry_exc)

    def _rejoin(self) -> None:
        """Register again, then take the new configuration: the orchestrator rotates the
        Worker API token and issues a new config_version, which must be acked."""
        assert self._client is not None and self.server is not None
        self._client.register(self._psk, self._capability())
        config = parse_node_config(self._client.fetch_config())
        self._config_version = config.config_version
        if not config.worker_token:
            log.error("the new node configuration has no Worker API token; staying unready")
            self.readiness.set_not_ready("configuration without a Worker API token")
            return
        self.server.app.extensions["cynode_worker"]["set_token"](config.worker_token)  # type: ignore[attr-defined]
        self._ack("applied")
        log.info("registered again; Worker API token rotated, config %s applied", self._config_version)

    def _report_loop(self) -> None:
        while not self._stop.wait(self.settings.capability_report_interval):
            self._send_report()

    # ---------------------------------------------------------------- shutdown

    def _shutdown(self) -> bool:
        """Stop jobs, the Worker API, the runtime and the backend; False when any did not stop cleanly."""
        self._stop.set()
        self.readiness.set_not_ready("node is shutting down")
        clean = True
        if self._reporter is not None:
            self._reporter.join(timeout=5.0)
        if self.executor is not None:
            self.executor.stop_accepting()
            self.executor.cancel_all()
            if not self.executor.wait_idle(self.settings.shutdown_grace):
                log.error("jobs still running after %g s", self.settings.shutdown_grace)
                clean = False
        steps: list[tuple[str, Callable[[], None] | None]] = [
            ("Worker API", self.server.stop if self.server is not None else None),
            ("sandbox runtime", self.runtime.close if self.runtime is not None else None),
            ("inference backend", self.backend.stop if self.backend is not None else None),
            ("control-plane client", self._client.close if self._client is not None else None),
        ]
        for what, stop in steps:
            if stop is None:
                continue
            try:
                stop()
            except Exception as exc:  # noqa: BLE001 - keep stopping the rest
                log.error("stopping the %s failed: %s", what, exc)
                clean = False
        return clean


def run_node(
    settings: NodeSettings,
    *,
    plugin_manager: pluggy.PluginManager | None = None,
    handle_signals: bool = True,
) -> int:
    """Run a node agent until SIGTERM/SIGINT; return the exit code for ``cynode node serve``.

    ``ConfigError`` propagates for the CLI to report (exit 2).
    ``handle_signals`` installs SIGTERM/SIGINT handlers (main thread only).
    """
    manager = NodeManager(settings, plugin_manager=plugin_manager)
    previous: dict[signal.Signals, Any] = {}
    if handle_signals and threading.current_thread() is threading.main_thread():

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            log.info("received %s", signal.Signals(signum).name)
            manager.request_stop()

        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, on_signal)
    try:
        return manager.run()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
