"""``LlamaCppBackend``: the :class:`~cynode_core.contract.hookspecs.InferenceBackend` the node agent drives.

``start()`` finds (or assembles) the GGUF, loads it, serves Ollama's API on
``127.0.0.1:<ephemeral port>`` and returns only once that server answers;
``stop()`` stops the server and frees the model.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cynode_core.contract import InferenceUnavailable, normalize_model_name
from cynode_llamacpp.engine import LlamaEngine
from cynode_llamacpp.model_file import (
    BundledModel,
    bundled_model,
    check_model_file,
    ensure_bundled_model,
    file_sha256,
)
from cynode_llamacpp.ollama_api import OllamaApiServer
from cynode_llamacpp.served_model import ServedModel
from cynode_llamacpp.settings import LlamaCppSettings

log = logging.getLogger(__name__)

# Loopback only: never send these through a proxy named in the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class LlamaCppBackend:
    """An embedded llama.cpp model behind Ollama's HTTP API on loopback."""

    name = "llamacpp"

    def __init__(self, settings: LlamaCppSettings) -> None:
        self.settings = settings
        self._engine: LlamaEngine | None = None
        self._server: OllamaApiServer | None = None
        self.load_seconds: float | None = None

    @classmethod
    def from_options(cls, options: Mapping[str, object]) -> LlamaCppBackend:
        return cls(LlamaCppSettings.from_options(options))

    # ------------------------------------------------------------ InferenceBackend

    def start(self) -> None:
        """Load the model and serve it; returns once ``GET /api/version`` answers."""
        if self._server is not None:
            return
        settings = self.settings
        served = settings.served_model_name()
        self._check_selected_model(served)
        bundled = bundled_model() if settings.model_path is None else None
        path = ensure_bundled_model(settings.models_dir) if bundled else settings.model_path
        assert path is not None
        check_model_file(path)
        started = time.perf_counter()
        engine, digest = self._load(path)
        if bundled is not None and digest != bundled.sha256:
            engine, digest, path = self._repair(engine, bundled)
        self.load_seconds = time.perf_counter() - started
        stat = path.stat()
        assert engine.info is not None
        model = ServedModel(
            name=served,
            info=engine.info,
            size=stat.st_size,
            digest=digest,
            modified_at=dt.datetime.fromtimestamp(stat.st_mtime).astimezone().isoformat(),
        )
        server = OllamaApiServer(engine, model, port=settings.port, default_num_predict=settings.num_predict)
        try:
            server.start()
        except OSError as exc:
            engine.close()
            raise InferenceUnavailable(f"llamacpp cannot listen on 127.0.0.1:{settings.port}: {exc}") from exc
        self._engine, self._server = engine, server
        try:
            self._get("/api/version")
        except InferenceUnavailable:
            self.stop()
            raise
        log.info(
            "llamacpp serves %s from %s at %s (loaded in %.2f s)", served, path, server.base_url, self.load_seconds
        )

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``; empty until :meth:`start` succeeded (the port is chosen then)."""
        return self._server.base_url if self._server is not None else ""

    def models(self) -> list[str]:
        """The model names ``GET /api/tags`` of the running server lists."""
        tags = self._get("/api/tags")
        return [str(model["name"]) for model in tags.get("models", [])]

    def stop(self) -> None:
        server, self._server = self._server, None
        engine, self._engine = self._engine, None
        if server is not None:
            server.stop()
        if engine is not None:
            engine.close()

    # ------------------------------------------------------------ helpers

    def _check_selected_model(self, served: str) -> None:
        selected = self.settings.selected_model
        if selected and normalize_model_name(selected) != normalize_model_name(served):
            source = (
                f"model file {self.settings.model_path}"
                if self.settings.model_path
                else "the bundled gemma-3-270m model"
            )
            raise InferenceUnavailable(
                f"the orchestrator selected model {selected!r}, but this node's llamacpp backend serves "
                f"{served!r} ({source}); point CYNODE_LLAMACPP_MODEL_PATH at a GGUF of {selected!r} "
                f"and name it with CYNODE_INFERENCE_MODEL, or select {served!r} on the orchestrator"
            )

    def _load(self, path: Path) -> tuple[LlamaEngine, str]:
        engine = LlamaEngine(path, n_ctx=self.settings.num_ctx, n_threads=self.settings.num_threads)
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            digest = pool.submit(file_sha256, path)
            engine.load()
            try:
                return engine, digest.result()
            except OSError as exc:
                engine.close()
                raise InferenceUnavailable(f"cannot read model file {path}: {exc}") from exc

    def _repair(self, engine: LlamaEngine, bundled: BundledModel) -> tuple[LlamaEngine, str, Path]:
        log.warning("the assembled model in %s has a wrong sha256; assembling it again", self.settings.models_dir)
        engine.close()
        path = ensure_bundled_model(self.settings.models_dir, reassemble=True)
        engine, digest = self._load(path)
        if digest != bundled.sha256:
            engine.close()
            raise InferenceUnavailable(f"model file {path} still has a wrong sha256 after assembling it again")
        return engine, digest, path

    def _get(self, path: str) -> dict[str, Any]:
        if not self.base_url:
            raise InferenceUnavailable("the llamacpp backend is not started")
        url = self.base_url + path
        try:
            with _OPENER.open(url, timeout=10) as response:
                payload = json.loads(response.read())
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise InferenceUnavailable(
                f"the llamacpp server at {self.base_url} does not answer GET {path}: {exc}"
            ) from exc
        if not isinstance(payload, dict):
            raise InferenceUnavailable(f"the llamacpp server answered GET {path} with {payload!r}")
        return payload
