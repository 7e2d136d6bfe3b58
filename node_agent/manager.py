"""The Node Manager: start-up sequence, readiness, shutdown.

Start-up follows docs/wire_contract.md#node-startup, in order; each failure
is fatal (log it, stop what was started, exit non-zero):

1. validate the settings (PSK, inference backend choice, plugin names) and
   log the plugins found, with their versions; build the sandbox runtime and
   settle what a killed predecessor left (``recovery``: its containers, by
   label, and workspaces are removed, its jobs recorded as failed), so
   nothing of it runs on while the orchestrator is awaited;
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
the orchestrator as a ``failed`` ack with the reason
(docs/wire_contract.md#node-config-ack). The calls to the control plane,
the periodic reports and re-registration are ``control_session``'s; the
checks of steps 2 and 3 are in ``startup_checks``.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

import pluggy

from cynode_core.contract import InferenceBackend, SandboxRuntime
from cynode_core.plugin_manager import describe_plugins, get_plugin_manager
from node_agent.capability import build_capability_report, existing_inference_service
from node_agent.client import ControlPlaneClient
from node_agent.control_session import ControlSession, StartupError, StopRequested
from node_agent.executor import JobExecutor
from node_agent.http_server import BackgroundServer
from node_agent.inference_chat import MAX_CALLS as MAX_CHAT_CALLS
from node_agent.inference_policy import node_models
from node_agent.job_reports import JobReports
from node_agent.job_store import start_pruning
from node_agent.node_config import NodeConfig
from node_agent.readiness import Readiness, backend_probe, runtime_probe
from node_agent.registry import inference_backend_factories, pick, sandbox_runtime_factories
from node_agent.settings import INFERENCE_NONE, NodeSettings
from node_agent.startup_checks import check_runtime, check_stop, check_workspace_root, wait_for_orchestrator
from node_agent.worker_api import create_worker_app

log = logging.getLogger(__name__)


class NodeManager:
    """One node agent process: runs the start-up sequence, then serves until stopped."""

    def __init__(self, settings: NodeSettings, *, plugin_manager: pluggy.PluginManager | None = None) -> None:
        self.settings = settings
        self.readiness = Readiness()
        self._pm = plugin_manager
        self._stop = threading.Event()
        self._backend_name = ""
        self._client: ControlPlaneClient | None = None
        self._session: ControlSession | None = None
        self.runtime: SandboxRuntime | None = None
        self.backend: InferenceBackend | None = None
        self._backend_started = False
        self._existing_inference: str | None = None
        self.executor: JobExecutor | None = None
        self.server: BackgroundServer | None = None
        self._reporter: threading.Thread | None = None

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
        except StopRequested:
            log.info("stop requested during start-up")
            return 0 if self._shutdown() else 1
        except BaseException:
            self._shutdown()
            raise
        slug = self._session.node_slug if self._session is not None else self.settings.node_slug
        log.info("node %s is ready", slug)
        self._stop.wait()
        log.info("stopping node %s", slug)
        return 0 if self._shutdown() else 1

    # --------------------------------------------------------------- start-up

    def _start(self) -> None:
        settings = self.settings
        # 1. Validate: every setting problem surfaces before any network call.
        psk = settings.require_psk()
        self._backend_name = settings.require_inference_backend()
        pm = self._pm if self._pm is not None else get_plugin_manager(disabled=settings.disable_plugins)
        for line in describe_plugins(pm):
            log.info("plugin %s", line)
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
        client = self._client = ControlPlaneClient(settings.orchestrator_url, timeout=settings.http_timeout)
        session = self._session = ControlSession(
            client,
            psk,
            node_slug=settings.node_slug,
            readiness=self.readiness,
            capability=self._capability,
            stop=self._stop,
        )

        # What a killed predecessor left goes first: its jobs' containers may still run.
        self.runtime = self._build_runtime(runtime_factory)
        self.executor = JobExecutor(self.runtime, settings)

        # 2. Wait for the orchestrator.
        wait_for_orchestrator(client, settings, self._stop)

        # 3. Start-up checks.
        check_runtime(self.runtime, settings.sandbox_image, self._stop)
        check_workspace_root(settings.resolved_workspace_root)
        if backend_factory is not None:
            self._existing_inference = existing_inference_service(backend_factory, settings.inference_options())
            if self._existing_inference:
                log.info(
                    "an inference service already answers at %s; it is used, none is started", self._existing_inference
                )

        # 4. Register.
        session.register(settings.readiness_timeout)

        # 5. Fetch the configuration.
        check_stop(self._stop)
        config = session.fetch_config()
        token = self._apply_config(config)

        # 6. Start the Worker API, and the warm containers (in the background).
        self._start_worker_api(token)
        if self.executor.warm is not None:
            log.info("keeping %d warm container(s) of %s", self.executor.warm.size, self.executor.warm.image)
            self.executor.warm.start()

        # 7. Inference.
        if backend_factory is not None:
            self._start_inference(backend_factory, config)
        elif config.inference_enabled:
            log.warning("the orchestrator asks for inference, but this node is configured with 'none'")

        # 8. Ready, ack, report.
        self.readiness.mark_ready()
        session.ack("applied")
        session.send_report()
        self._reporter = threading.Thread(
            target=session.report_loop,
            args=(settings.capability_report_interval,),
            name="capability-reports",
            daemon=True,
        )
        self._reporter.start()
        # Finished job records past their retention go while the node runs too, not only at start.
        start_pruning(
            settings.resolved_state_dir / "jobs",
            settings.job_result_retention,
            settings.job_result_prune_interval,
            self._stop,
        )

    def _build_runtime(self, factory: Callable[[dict[str, object]], SandboxRuntime]) -> SandboxRuntime:
        settings = self.settings
        check_stop(self._stop)
        try:
            return factory(settings.runtime_options())
        except Exception as exc:
            raise StartupError(f"sandbox runtime {settings.sandbox_runtime!r} could not be set up: {exc}") from exc

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

    def _apply_config(self, config: NodeConfig) -> str:
        """Check the configuration this node can apply; return the Worker API token."""
        assert self.executor is not None and self._session is not None
        if not config.supported_version:
            self._session.fail_config(
                "unsupported_config_version",
                f"unsupported node configuration version {config.version!r} (this node applies version 1)",
            )
        if not config.worker_token:
            # The reference implementation (CyNodeAI) skips the Worker API then; a node that
            # cannot take jobs must not look ready.
            self._session.fail_config(
                "worker_api_token_missing", "the node configuration has no worker_api.orchestrator_bearer_token"
            )
        self.executor.limits.apply_constraints(
            max_request_bytes=config.max_request_bytes, max_job_timeout_seconds=config.max_job_timeout_seconds
        )
        return config.worker_token

    def _start_worker_api(self, token: str) -> None:
        assert self.executor is not None and self.runtime is not None and self._session is not None
        settings = self.settings
        check_stop(self._stop)
        self.readiness.set_not_ready("starting: inference backend and config ack pending")
        self.readiness.add_probe(self.runtime.name, runtime_probe(self.runtime, settings.sandbox_image))
        reports = (
            JobReports(
                self._session.report_job,
                self._stop,
                give_up_after=settings.job_result_retention,
                output_cap=settings.max_output_bytes,
            )
            if settings.job_reports
            else None
        )
        app = create_worker_app(
            self.executor,
            bearer_token=token,
            readiness=self.readiness,
            reports=reports,
            inference_timeout=settings.node_inference_timeout_seconds,
        )
        try:
            # Enough threads for every slot, a repeat per running job, the inference:chat calls, and health checks.
            server = BackgroundServer(
                app,
                host=settings.worker_listen_host,
                port=settings.worker_listen_port,
                threads=settings.job_slots * 2 + 4 + MAX_CHAT_CALLS,
                max_body=settings.max_request_bytes,  # refused by the server before it is read
            )
        except OSError as exc:
            self._session.fail_config(
                "worker_api_start_failed",
                f"Worker API cannot listen on {settings.worker_listen_host}:{settings.worker_listen_port}: {exc}",
            )
        self.server = server
        self._session.set_worker_token = app.extensions["cynode_worker"]["set_token"]
        server.start()

    def _start_inference(self, factory: Callable[[dict[str, object]], InferenceBackend], config: NodeConfig) -> None:
        assert self._session is not None
        check_stop(self._stop)
        name = self._backend_name
        options: dict[str, object] = {**self.settings.inference_options(), **config.backend_options()}
        log.info("starting inference backend %s", name)
        try:
            self.backend = factory(options)
            self.backend.start()
            self._backend_started = True
            models = self.backend.models()  # the backend must answer before the node acks
        except Exception as exc:  # noqa: BLE001 - any plugin failure becomes a failed ack
            self._session.fail_config("inference_start_failed", f"inference start-up failed: backend {name!r}: {exc}")
        log.info("inference backend %s answers at %s with %d model(s)", name, self.backend.base_url, len(models))
        backend = self.backend
        assert self.executor is not None
        # From now on use_inference jobs get a per-job proxy to it (docs/wire_contract.md#inference-proxy),
        # which lets them name the configured model(s), else those the backend serves now.
        allowed = node_models((options.get("model"), options.get("selected_model")), models)
        self.executor.set_inference_backend(backend.base_url, allowed)
        self.readiness.add_probe(f"inference backend {name}", backend_probe(backend))

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
        warm = self.executor.warm if self.executor is not None else None
        steps: list[tuple[str, Callable[[], None] | None]] = [
            ("Worker API", self.server.stop if self.server is not None else None),
            ("warm containers", warm.close if warm is not None else None),
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
