"""``OllamaBackend``: an existing Ollama server, reached with the official ``ollama`` client.

``start()`` checks that the server answers (``GET /api/version``, with a short
bounded wait for a server that is still coming up), lists its models and
checks that the configured and the selected model are there. It never pulls
a model and never starts a server or container
(docs/wire_contract.md#node-startup): a missing model is an
``InferenceUnavailable`` telling the operator to pull it on that server. ``stop()`` only closes our HTTP connections.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx
import ollama

from cynode_core.contract import InferenceUnavailable, is_loopback_host, normalize_model_name

log = logging.getLogger(__name__)

DEFAULT_URL = "http://127.0.0.1:11434"
DEFAULT_START_TIMEOUT = 10.0
DEFAULT_REQUEST_TIMEOUT = 120.0
PROBE_TIMEOUT = 5.0


class OllamaBackend:
    """The ``ollama`` inference backend."""

    name = "ollama"

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        required_models: Sequence[str] = (),
        start_timeout: float = DEFAULT_START_TIMEOUT,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    ) -> None:
        self.url = _normalize_url(url)
        self.required_models = list(dict.fromkeys(m for m in required_models if m))
        self.start_timeout = start_timeout
        self.request_timeout = request_timeout
        self.server_version: str | None = None
        # Proxies from the environment are for the outside world, not for a server on this machine.
        self._trust_env = not _is_loopback(self.url)
        self._client: ollama.Client | None = None

    @classmethod
    def from_options(cls, options: Mapping[str, object], environ: Mapping[str, str] | None = None) -> OllamaBackend:
        """Read ``ollama_url``, ``model``, ``selected_model``, ``start_timeout``, ``request_timeout``."""
        env = os.environ if environ is None else environ
        url = _text(options.get("ollama_url")) or env.get("CYNODE_OLLAMA_URL") or DEFAULT_URL
        models = [m for m in (_text(options.get("model")), _text(options.get("selected_model"))) if m]
        return cls(
            url,
            required_models=models,
            start_timeout=_seconds(
                "start_timeout",
                options.get("start_timeout") or env.get("CYNODE_OLLAMA_START_TIMEOUT"),
                DEFAULT_START_TIMEOUT,
            ),
            request_timeout=_seconds(
                "request_timeout",
                options.get("request_timeout") or env.get("CYNODE_OLLAMA_REQUEST_TIMEOUT"),
                DEFAULT_REQUEST_TIMEOUT,
            ),
        )

    # ------------------------------------------------------------ InferenceBackend

    @property
    def base_url(self) -> str:
        return self.url

    def start(self) -> None:
        """Return once the server answers and has every required model; ``InferenceUnavailable`` otherwise.

        A start that fails leaves no connection open.
        """
        try:
            self.server_version = self._wait_for_version()
            available = self.models()
            present = {normalize_model_name(name) for name in available}
            for model in self.required_models:
                if normalize_model_name(model) not in present:
                    listed = ", ".join(available) or "none"
                    raise InferenceUnavailable(
                        f"model {model!r} not found on the Ollama server at {self.url}; pull it there "
                        f"(ollama pull {model}); the server has: {listed}"
                    )
        except BaseException:
            self.stop()
            raise
        log.info("Ollama %s at %s serves %d model(s)", self.server_version, self.url, len(available))

    def models(self) -> list[str]:
        """Names of the models the server lists (``GET /api/tags``)."""
        try:
            listing = self.client.list()
        except (ollama.ResponseError, ConnectionError, httpx.HTTPError) as exc:
            raise self._unavailable("GET /api/tags", exc) from exc
        return [str(model.model) for model in listing.models if model.model]

    def stop(self) -> None:
        """Close our connections; the Ollama server itself is not ours and keeps running."""
        client, self._client = self._client, None
        if client is not None:
            client.close()

    # ------------------------------------------------------------ thin helpers

    @property
    def client(self) -> ollama.Client:
        """The ``ollama.Client`` for this server (built on first use)."""
        if self._client is None:
            self._client = ollama.Client(host=self.url, timeout=self.request_timeout, trust_env=self._trust_env)
        return self._client

    def generate(
        self,
        prompt: str,
        *,
        stream: bool = False,
        model: str | None = None,
        options: Mapping[str, Any] | None = None,
        raw: bool = False,
    ) -> Any:
        """``POST /api/generate``: a ``GenerateResponse``, or an iterator of them when ``stream``."""
        name = self._model(model)
        try:
            if stream:
                parts = self.client.generate(model=name, prompt=prompt, stream=True, options=options, raw=raw)
                return self._guard(parts, "POST /api/generate")
            return self.client.generate(model=name, prompt=prompt, stream=False, options=options, raw=raw)
        except (ollama.ResponseError, ConnectionError, httpx.HTTPError) as exc:
            raise self._unavailable("POST /api/generate", exc) from exc

    def chat(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        stream: bool = False,
        model: str | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> Any:
        """``POST /api/chat``: a ``ChatResponse``, or an iterator of them when ``stream``."""
        name = self._model(model)
        try:
            if stream:
                parts = self.client.chat(model=name, messages=list(messages), stream=True, options=options)
                return self._guard(parts, "POST /api/chat")
            return self.client.chat(model=name, messages=list(messages), stream=False, options=options)
        except (ollama.ResponseError, ConnectionError, httpx.HTTPError) as exc:
            raise self._unavailable("POST /api/chat", exc) from exc

    # ------------------------------------------------------------ internals

    def _model(self, model: str | None) -> str:
        if model:
            return model
        if not self.required_models:
            raise ValueError("no model named: pass model= or configure one (CYNODE_INFERENCE_MODEL)")
        return self.required_models[0]

    def _guard(self, parts: Iterator[Any], what: str) -> Iterator[Any]:
        try:
            yield from parts
        except (ollama.ResponseError, ConnectionError, httpx.HTTPError) as exc:
            raise self._unavailable(what, exc) from exc

    def _wait_for_version(self) -> str:
        deadline = time.monotonic() + self.start_timeout
        with httpx.Client(base_url=self.url, timeout=PROBE_TIMEOUT, trust_env=self._trust_env) as http:
            while True:
                try:
                    response = http.get("/api/version")
                    break
                except (httpx.ConnectError, httpx.RemoteProtocolError) as exc:
                    # Not up (yet): a server started together with the node gets a short grace period.
                    if time.monotonic() >= deadline:
                        raise InferenceUnavailable(
                            f"the Ollama server at {self.url} is unreachable ({exc}); the ollama backend uses an "
                            "existing server and never starts one: start Ollama there or set CYNODE_OLLAMA_URL"
                        ) from exc
                    time.sleep(0.25)
                except httpx.TimeoutException as exc:
                    raise InferenceUnavailable(
                        f"the Ollama server at {self.url} did not answer GET /api/version within {PROBE_TIMEOUT:.0f} s"
                    ) from exc
                except httpx.HTTPError as exc:
                    raise InferenceUnavailable(f"cannot reach the Ollama server at {self.url}: {exc}") from exc
        try:
            version = response.json().get("version") if response.status_code == 200 else None
        except (ValueError, AttributeError):
            version = None
        if not isinstance(version, str):
            raise InferenceUnavailable(
                f"{self.url} answered GET /api/version with HTTP {response.status_code} and no version: "
                "it does not look like an Ollama server"
            )
        return version

    def _unavailable(self, what: str, exc: BaseException) -> InferenceUnavailable:
        if isinstance(exc, ollama.ResponseError):
            return InferenceUnavailable(
                f"the Ollama server at {self.url} answered {what} with HTTP {exc.status_code}: {exc.error}"
            )
        if isinstance(exc, httpx.TimeoutException):
            return InferenceUnavailable(
                f"the Ollama server at {self.url} did not answer {what} within {self.request_timeout:.0f} s"
            )
        return InferenceUnavailable(f"the Ollama server at {self.url} is unreachable ({what}): {exc}")


def _normalize_url(url: str) -> str:
    text = url.strip().rstrip("/")
    if "://" not in text:
        text = "http://" + text
    return text


def _is_loopback(url: str) -> bool:
    return is_loopback_host(urlsplit(url).hostname or "")


def _text(value: object) -> str | None:
    text = str(value).strip() if value is not None else ""
    return text or None


def _seconds(name: str, value: object, default: float) -> float:
    if value is None or value == "":
        return default
    try:
        seconds = float(str(value))
    except ValueError:
        raise InferenceUnavailable(f"ollama setting {name} must be a number of seconds, got {value!r}") from None
    if seconds < 0:
        raise InferenceUnavailable(f"ollama setting {name} must not be negative, got {seconds}")
    return seconds
